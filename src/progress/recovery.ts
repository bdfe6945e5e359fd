// Recovery accounting: where the time of each restart went, and what the run kept. Computed from the failure records
// the training workflow keeps (TrainingStatus.failures); shown by `keel status`, `keel report` and bench:faults.
//
// Per restart, on the wall clock:
//
//   last progress ── detected ── job RUNNING again ── first rollout again
//   └─ detection ──┘└─ keel's share ─┘└─ trainer start-up ─┘
//
// - detection: from the last rollout supervision saw to the failure being classified (a crash is seen at once, a
//   hang after policies.hang.rollout, a lost node when Ray or the job says so);
// - keel's share: classify, stop the job, heal (probe; keep, repair or restart Ray), resubmit -- until the job's driver
//   runs (first seen RUNNING by supervision; the resubmission when that was not seen);
// - trainer start-up: the trainer's own imports, model load and engine start, until its first rollout;
// - rollouts lost: the rollouts after the checkpoint resumed from that were done and must be done again
//   (lastRollout - tracker), costing their time at the run's healthy pace.
import type { TrainingStatus } from '../../workflows/definitions.js';

type FailureRecord = TrainingStatus['failures'][number];

export interface RestartAccount {
  kind: string;
  at: string;
  /** the last rollout seen before the failure, and the checkpoint the job resumed from */
  rollout?: number;
  tracker?: number;
  rolloutsLost: number;
  /** seconds (undefined: not recorded, e.g. by keel before 0.3, or not recovered yet) */
  detection?: number;
  keel?: number;
  trainerStartup?: number;
  /** from the last progress to the first rollout again: the whole interruption */
  down?: number;
  heal?: FailureRecord['heal'];
  restartedOn?: string[];
}

export interface RecoveryTotals {
  /** seconds of training wall time accounted */
  wall: number;
  /** the healthy pace (seconds per rollout, checkpoint saves included), from checkpoint intervals with no failure */
  pace?: number;
  /** outages (failures in a row until training came back count once) and the time to redo lost rollouts */
  down: number;
  redo?: number;
  /** the part of `down` that was the trainer's start-up */
  trainerStartup: number;
  kept?: number;
  /** effective training time ratio: kept / wall */
  ettr?: number;
  /** kept / (wall - trainer start-up): what keel's own share allows, were the trainer to start instantly */
  ettrExcludingStartup?: number;
  rolloutsLost: number;
}

/** Failures that end the run are not restarts. */
const endsTheRun = new Set(['config-error', 'resume-mismatch']);

const seconds = (from?: string, to?: string): number | undefined =>
  from && to ? Math.max(0, (Date.parse(to) - Date.parse(from)) / 1000) : undefined;

export function restartAccounts(training: Pick<TrainingStatus, 'failures'>): RestartAccount[] {
  return training.failures
    .filter((f) => !endsTheRun.has(f.kind))
    .map((f) => {
      const running = f.jobRunningAt ?? f.resubmittedAt;
      const account: RestartAccount = {
        kind: f.kind,
        at: f.at,
        rolloutsLost:
          f.lastRollout !== undefined ? Math.max(0, f.lastRollout - (f.tracker !== undefined ? f.tracker : -1)) : 0,
        detection: seconds(f.lastProgressAt, f.detectedAt),
        keel: seconds(f.detectedAt, running),
        trainerStartup: seconds(running, f.recoveredAt),
        down: seconds(f.lastProgressAt ?? f.detectedAt, f.recoveredAt),
      };
      if (f.lastRollout !== undefined) account.rollout = f.lastRollout;
      if (f.tracker !== undefined) account.tracker = f.tracker;
      if (f.heal) account.heal = f.heal;
      if (f.restartedOn) account.restartedOn = f.restartedOn;
      return account;
    });
}

/**
 * The healthy pace: the median of (time between two consecutive checkpoints / rollouts between them) over the
 * intervals no failure fell into.
 */
export function healthyPace(training: Pick<TrainingStatus, 'checkpoints' | 'failures'>): number | undefined {
  const failures = training.failures.map((f) => Date.parse(f.at));
  const paces: number[] = [];
  const checkpoints = [...training.checkpoints].sort((a, b) => a.iteration - b.iteration);
  for (let i = 1; i < checkpoints.length; i++) {
    const [a, b] = [checkpoints[i - 1]!, checkpoints[i]!];
    const [from, to] = [Date.parse(a.at), Date.parse(b.at)];
    if (b.iteration <= a.iteration || to <= from) continue;
    if (failures.some((t) => t >= from && t <= to)) continue;
    paces.push((to - from) / 1000 / (b.iteration - a.iteration));
  }
  if (paces.length === 0) return undefined;
  paces.sort((x, y) => x - y);
  const mid = Math.floor(paces.length / 2);
  return paces.length % 2 ? paces[mid]! : (paces[mid - 1]! + paces[mid]!) / 2;
}

/**
 * Seconds training made no progress because of failures: failures in a row before training came back (a crash loop,
 * an operator's pause after it) are one outage, from the progress before the first to the first rollout after the
 * last. An outage still open counts until `resumedAt` (the current job's first rollout, when one was seen after the
 * outage began), else until `endedAt`.
 */
export function outageSeconds(failures: FailureRecord[], endedAt: string, resumedAt?: string): number {
  let total = 0;
  let openedAt: string | undefined;
  for (const f of failures.filter((x) => !endsTheRun.has(x.kind))) {
    openedAt ??= f.lastProgressAt ?? f.detectedAt ?? f.at;
    if (f.recoveredAt) {
      total += seconds(openedAt, f.recoveredAt) ?? 0;
      openedAt = undefined;
    }
  }
  if (openedAt) {
    const resumed = resumedAt !== undefined && Date.parse(resumedAt) >= Date.parse(openedAt);
    total += seconds(openedAt, resumed ? resumedAt : endedAt) ?? 0;
  }
  return total;
}

/** The run's totals between `startedAt` (training began) and `endedAt` (or now). */
export function recoveryTotals(
  training: Pick<TrainingStatus, 'failures' | 'checkpoints'>,
  startedAt: string,
  endedAt: string,
): RecoveryTotals {
  const restarts = restartAccounts(training);
  const wall = seconds(startedAt, endedAt) ?? 0;
  const pace = healthyPace(training);
  const down = outageSeconds(training.failures, endedAt);
  const trainerStartup = restarts.reduce((a, r) => a + (r.trainerStartup ?? 0), 0);
  const rolloutsLost = restarts.reduce((a, r) => a + r.rolloutsLost, 0);
  const totals: RecoveryTotals = { wall, down, trainerStartup, rolloutsLost };
  if (pace !== undefined) {
    totals.pace = pace;
    totals.redo = rolloutsLost * pace;
    totals.kept = Math.max(0, wall - down - totals.redo);
    if (wall > 0) totals.ettr = totals.kept / wall;
    if (wall - trainerStartup > 0) totals.ettrExcludingStartup = Math.min(1, totals.kept / (wall - trainerStartup));
  }
  return totals;
}

const s = (value: number | undefined): string => (value === undefined ? '-' : `${value.toFixed(1)} s`);

/** One line per restart, for `keel status`. */
export function formatRestart(r: RestartAccount): string {
  const heal = r.heal ? ` (Ray ${r.heal}${r.restartedOn?.length ? ` on ${r.restartedOn.join(', ')}` : ''})` : '';
  return `detection ${s(r.detection)}, keel ${s(r.keel)}${heal}, trainer start-up ${s(r.trainerStartup)}, rollouts lost ${r.rolloutsLost}`;
}

/** The totals in one line, for `keel status`. */
export function formatTotals(t: RecoveryTotals): string {
  if (t.kept === undefined || t.ettr === undefined)
    return `training wall ${s(t.wall)}; interrupted ${s(t.down)}; rollouts lost ${t.rolloutsLost} (pace not known yet: fewer than two checkpoints)`;
  return (
    `time kept ${s(t.kept)} of ${s(t.wall)} (ETTR ${t.ettr.toFixed(2)}); lost: interrupted ${s(t.down)} ` +
    `(trainer start-up ${s(t.trainerStartup)}), ${t.rolloutsLost} rollouts re-done ${s(t.redo)} at ${t.pace!.toFixed(2)} s/rollout`
  );
}
