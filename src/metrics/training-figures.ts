// What the per-run gauges say, computed from one training's recorded state (its status query), what its supervision
// last heartbeated (the live position in the job's log) and the node pool of its spec. Pure: the collector gathers
// the inputs, the registry exposes the result, and docs/metrics.md defines each figure.
import { z } from 'zod';
import { healthyPace, outageSeconds, restartAccounts } from '../progress/recovery.js';

const isoTime = z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'must be an ISO time');

/** The fields of the training status query the figures read (the query answers more; unknown fields pass). */
export const trainingStatusSchema = z.object({
  phase: z.string(),
  jobId: z.string().optional(),
  submissions: z.number(),
  restarts: z.number(),
  lastRollout: z.number().optional(),
  numRollout: z.number(),
  saveInterval: z.number().optional(),
  checkpoints: z.array(z.object({ iteration: z.number(), at: isoTime, evalScore: z.number().optional() })),
  evals: z.array(z.object({ rollout: z.number(), score: z.number() })),
  failures: z.array(
    z.object({
      at: isoTime,
      kind: z.string(),
      message: z.string(),
      lastRollout: z.number().optional(),
      tracker: z.number().optional(),
      detectedAt: isoTime.optional(),
      lastProgressAt: isoTime.optional(),
      recoveredAt: isoTime.optional(),
      // the restart's timeline (recovery accounting, keel 0.3+)
      healedAt: isoTime.optional(),
      heal: z.enum(['kept', 'repaired', 'restarted']).optional(),
      restartedOn: z.array(z.string()).optional(),
      resubmittedAt: isoTime.optional(),
      jobRunningAt: isoTime.optional(),
    }),
  ),
  activeNodes: z.array(z.string()).optional(),
  quarantined: z.array(z.string()).optional(),
  extraNodes: z.array(z.object({ host: z.string(), name: z.string().optional() })).optional(),
});
export type TrainingStatusSample = z.infer<typeof trainingStatusSchema>;

/** What the running supervision activity last heartbeated: its cursor in the current job's log. */
export const liveCursorSchema = z.object({
  jobId: z.string(),
  lastRollout: z.number().optional(),
  firstRolloutAt: isoTime.optional(),
  lastProgressAt: isoTime.optional(),
});
export type LiveCursor = z.infer<typeof liveCursorSchema>;

/** The nodes a run may use (spec nodes, spares), by name, and the ones it starts on before any heal. */
export interface NodePool {
  names: string[];
  initial: string[];
}

export interface TrainingSample {
  status: TrainingStatusSample;
  /** from the supervision's heartbeat, when one is running and has heartbeated */
  live?: LiveCursor;
  /** from the spec the training was started with; absent when it could not be read */
  pool?: NodePool;
  /** when the current run of the training chain started (before its first checkpoint, the checkpoint age counts from it) */
  startedAt: Date;
}

export interface TrainingFigures {
  phase: string;
  rollout?: number;
  numRollout: number;
  saveInterval?: number;
  lastCheckpoint?: number;
  lastCheckpointAgeSeconds: number;
  /** the median gap between the last recorded checkpoints, when at least two gaps are known */
  checkpointIntervalSeconds?: number;
  lastEvalScore?: number;
  lastEvalRollout?: number;
  lastProgressAgeSeconds?: number;
  submissions: number;
  restarts: number;
  failuresByKind: Record<string, number>;
  secondsLost: number;
  rolloutsLost: number;
  /** the lost rollouts' time at the run's healthy pace (recovery accounting), once the pace is known */
  redoSeconds?: number;
  /** the restarts' time by part, each once it has ended (recovery accounting): detection, keel's share, start-up */
  recoverySeconds: { detection: number; keel: number; trainer_startup: number };
  nodes?: { healthy: number; quarantined: number; spare: number };
}

const seconds = (ms: number): number => Math.max(0, ms) / 1000;

/**
 * The furthest rollout the training has logged: the running supervision's heartbeat is ahead of the recorded state
 * between checkpoints, and the recorded state is ahead while a resumed job redoes the rollouts after its checkpoint.
 */
function furthest(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined ? b : b === undefined ? a : Math.max(a, b);
}

export function trainingFigures(sample: TrainingSample, now: number): TrainingFigures {
  const { status } = sample;
  const live = sample.live && sample.live.jobId === status.jobId ? sample.live : undefined;
  const lastCheckpoint = status.checkpoints.at(-1);
  const lastEval = status.evals.at(-1);
  const failuresByKind: Record<string, number> = {};
  for (const f of status.failures) failuresByKind[f.kind] = (failuresByKind[f.kind] ?? 0) + 1;
  return {
    phase: status.phase,
    rollout: furthest(live?.lastRollout, status.lastRollout),
    numRollout: status.numRollout,
    saveInterval: status.saveInterval,
    lastCheckpoint: lastCheckpoint?.iteration,
    lastCheckpointAgeSeconds: seconds(now - (lastCheckpoint ? Date.parse(lastCheckpoint.at) : +sample.startedAt)),
    checkpointIntervalSeconds: checkpointInterval(status.checkpoints),
    lastEvalScore: lastEval?.score,
    lastEvalRollout: lastEval?.rollout,
    lastProgressAgeSeconds: live?.lastProgressAt ? seconds(now - Date.parse(live.lastProgressAt)) : undefined,
    submissions: status.submissions,
    restarts: status.restarts,
    failuresByKind,
    secondsLost: secondsLost(status, live, now),
    rolloutsLost: status.failures.reduce((sum, f) => sum + Math.max(0, (f.lastRollout ?? -1) - (f.tracker ?? -1)), 0),
    ...recovery(status),
    nodes: sample.pool ? nodeCounts(status, sample.pool) : undefined,
  };
}

/**
 * Wall time without training progress because of failures: from the last progress the supervision saw before a failure
 * (else its detection) to the first rollout of the job that resumed after it. Failures one after another before any
 * rollout (a crash loop) are one outage; an outage still open counts until now (healing, waiting for nodes, paused for
 * an operator), or until the current job's first rollout when its supervision has seen one. Rollouts redone after the
 * resume are not in it: they are `rolloutsLost`.
 */
export function secondsLost(status: TrainingStatusSample, live: LiveCursor | undefined, now: number): number {
  return outageSeconds(status.failures, new Date(now).toISOString(), live?.firstRolloutAt);
}

/** Where the restarts' time went, and the lost rollouts' time, as keel status accounts them. */
function recovery(status: TrainingStatusSample): Pick<TrainingFigures, 'redoSeconds' | 'recoverySeconds'> {
  const accounts = restartAccounts(status);
  const sum = (part: 'detection' | 'keel' | 'trainerStartup') => accounts.reduce((a, r) => a + (r[part] ?? 0), 0);
  const pace = healthyPace(status);
  return {
    recoverySeconds: { detection: sum('detection'), keel: sum('keel'), trainer_startup: sum('trainerStartup') },
    redoSeconds: pace === undefined ? undefined : accounts.reduce((a, r) => a + r.rolloutsLost, 0) * pace,
  };
}

/** The median of the last (up to 10) gaps between recorded checkpoints, in seconds; undefined with fewer than 2 gaps. */
function checkpointInterval(checkpoints: TrainingStatusSample['checkpoints']): number | undefined {
  const times = checkpoints.slice(-11).map((c) => Date.parse(c.at));
  // Checkpoints recorded together (a poll that saw two saves) are one gap apart, not two.
  const gaps = times
    .slice(1)
    .map((t, i) => t - times[i]!)
    .filter((g) => g > 0)
    .sort((a, b) => a - b);
  if (gaps.length < 2) return undefined;
  const mid = gaps.length / 2;
  return seconds(gaps.length % 2 ? gaps[Math.floor(mid)]! : (gaps[mid - 1]! + gaps[mid]!) / 2);
}

/**
 * healthy: the nodes the current Ray cluster runs on (before any heal, the layout's first nodes); quarantined: the
 * nodes the last heal found unreachable; spare: every other node of the pool (spec nodes, spares, nodes an operator
 * added), ready to replace a lost one.
 */
function nodeCounts(status: TrainingStatusSample, pool: NodePool): TrainingFigures['nodes'] {
  const names = new Set([...pool.names, ...(status.extraNodes ?? []).map((n) => n.name ?? n.host)]);
  const healthy = new Set(status.activeNodes ?? pool.initial);
  const quarantined = new Set(status.quarantined ?? []);
  const spare = [...names].filter((n) => !healthy.has(n) && !quarantined.has(n));
  return { healthy: healthy.size, quarantined: quarantined.size, spare: spare.length };
}
