// A rehearsal's two ETTRs: the one measured by keel's recovery accounting (src/progress/recovery.ts) and the one the
// plan's model (src/plan/reliability.ts) predicts when fed with the rehearsal's own measured times and failure rate.
// The check is that the model predicts what happened, so that its advice on the save interval can be trusted.
// Pure; `npm run bench:rehearsal` and docs/reliability.md.
import type { TrainingStatus } from '../../workflows/definitions.js';
import { outageSeconds, restartAccounts } from '../progress/recovery.js';
import { expectedEttr, type ReliabilityModel } from './reliability.js';

/** What a rehearsal measured, beside the failure records keel kept. */
export interface RehearsalMeasures {
  /** training wall time: from the first rollout to the end of training */
  wallSeconds: number;
  endedAt: string;
  failuresInjected: number;
  /** of the injected failures, those that restart the job (an engine failure with fault tolerance on does not) */
  restartingFailures: number;
  saveInterval: number;
  /** the healthy period: from one save's start to the next one's, with no failure between (k rollouts, evals, a save) */
  periodSeconds: number;
  /** training stops this long for one save (an async save: the staging) */
  saveSeconds: number;
  /** an async save: the whole write, during which a failure loses the interval before it too */
  asyncWriteSeconds?: number;
  /** saves the run made */
  saves: number;
  /**
   * Where the restarting failures fell, as the rehearsal placed them: for each, the rollouts done since the last save;
   * and how many fell while that save was still being written (async save). Without it the model assumes failures
   * that arrive at random, as `keel plan` does.
   */
  placement?: { rolloutsSinceSave: number[]; duringWrite: number };
}

export interface RehearsalEttr {
  model: ReliabilityModel;
  /** kept training / wall: wall - outages - re-done rollouts - saves, over wall */
  ettrMeasured: number;
  /** the model fed with where the failures fell (`placement`); without a placement, as `ettrModelAtRandom` */
  ettrModel: number;
  /** the model as `keel plan` uses it: failures at random times lose half an interval, plus an async save's write */
  ettrModelAtRandom: number;
  rolloutsLost: number;
  downSeconds: number;
  restarts: number;
}

export function rehearsalEttr(training: Pick<TrainingStatus, 'failures'>, m: RehearsalMeasures): RehearsalEttr {
  const accounts = restartAccounts(training);
  const down = outageSeconds(training.failures, m.endedAt);
  const rolloutsLost = accounts.reduce((sum, a) => sum + a.rolloutsLost, 0);
  // A rollout's time, evals spread over rollouts, without the save: what the model calls r.
  const rolloutSeconds = (m.periodSeconds - m.saveSeconds) / m.saveInterval;
  const model: ReliabilityModel = {
    saveSeconds: m.saveSeconds,
    // R: from the last progress before a failure to the first rollout of the resubmitted job, on average
    restartSeconds: accounts.length > 0 ? down / accounts.length : 0,
    rolloutSeconds,
    mtbfSeconds: m.failuresInjected > 0 ? m.wallSeconds / m.failuresInjected : Number.POSITIVE_INFINITY,
    restartedShare: m.failuresInjected > 0 ? m.restartingFailures / m.failuresInjected : 1,
    ...(m.asyncWriteSeconds === undefined ? {} : { extraLossSeconds: m.asyncWriteSeconds }),
  };
  const kept = m.wallSeconds - down - rolloutsLost * rolloutSeconds - m.saves * m.saveSeconds;
  const atRandom = expectedEttr(model, m.saveInterval);
  const placed = m.placement;
  const n = placed?.rolloutsSinceSave.length ?? 0;
  // A failure during an async save's write loses the interval before it too: k rollouts more.
  const placedModel: ReliabilityModel | undefined =
    placed && n > 0
      ? {
          ...model,
          lostShare: placed.rolloutsSinceSave.reduce((sum, x) => sum + x, 0) / n / m.saveInterval,
          extraLossSeconds: (placed.duringWrite / n) * m.saveInterval * rolloutSeconds,
        }
      : undefined;
  return {
    model: placedModel ?? model,
    ettrMeasured: m.wallSeconds > 0 ? Math.max(0, kept) / m.wallSeconds : 0,
    ettrModel: placedModel ? expectedEttr(placedModel, m.saveInterval) : atRandom,
    ettrModelAtRandom: atRandom,
    rolloutsLost,
    downSeconds: down,
    restarts: accounts.length,
  };
}

/**
 * Where the k-th injected failure falls within a save interval (rollouts done since the last save): the van der
 * Corput sequence, so that any first n failures spread evenly over the interval (the first 1, 3 or 7 lose half an
 * interval on average, as failures at random times do; the first 4 lose 0.41 of one). The model is fed with the
 * places (`RehearsalMeasures.placement`), since a few failures cannot average out.
 */
export function failurePhase(k: number, saveInterval: number): number {
  let x = 0;
  let base = 0.5;
  for (let n = k + 1; n > 0; n = Math.floor(n / 2), base /= 2) if (n % 2) x += base;
  return Math.min(saveInterval - 1, Math.max(1, Math.round(x * saveInterval)));
}

/** What a rehearsal reads from the times its job logs' lines were first seen. */
export interface LineMeasures {
  /** the healthy period (k rollouts, their eval and a save), NaN when no stretch of the run showed one */
  periodSeconds: number;
  /** where the period came from: two saves of one job, or the rollouts' own lines */
  periodFrom: 'saves' | 'rollouts' | 'none';
  saveSeconds: number;
  asyncWriteSeconds: number;
  saves: number;
}

/**
 * The healthy period, a save's blocking part and an async save's whole write, from the first-seen time of each job's
 * lines, keyed `<job> <what> <iteration>` with `what` one of `saving`, `saved`, `staged` (Megatron's async save
 * scheduled) and `perf` (the rollout's perf line). Stretches with an injected failure in them are left out. The period is
 * the median from one save's start to the same job's next; when no job saved twice between failures (at a high
 * failure rate they come about once an interval), it is built from the rollouts' lines: k - 1 gaps with nothing else
 * between two rollouts, and the gap that holds the save and its eval.
 */
export function measureLines(
  firstSeen: ReadonlyMap<string, number>,
  injectedAt: readonly number[],
  saveInterval: number,
  asyncSave: boolean,
): LineMeasures {
  const k = saveInterval;
  const byJob = new Map<string, Map<string, number>>();
  for (const [key, at] of firstSeen) {
    const [job, what, iteration] = key.split(' ');
    const lines = byJob.get(job!) ?? new Map<string, number>();
    lines.set(`${what} ${Number(iteration)}`, at);
    byJob.set(job!, lines);
  }
  const clean = (from: number, to: number) => !injectedAt.some((at) => at >= from && at <= to);
  const periods: number[] = [];
  const blocking: number[] = [];
  const writes: number[] = [];
  const plain: number[] = [];
  const withSave: number[] = [];
  let saves = 0;
  for (const lines of byJob.values()) {
    for (const [key, at] of lines) {
      const [what, iteration] = key.split(' ');
      const n = Number(iteration);
      if (what === 'perf') {
        const next = lines.get(`perf ${n + 1}`);
        if (next !== undefined && clean(at, next)) ((n + 1) % k === 0 ? withSave : plain).push((next - at) / 1000);
        continue;
      }
      if (what !== 'saving') continue;
      saves++;
      const next = lines.get(`saving ${n + k}`);
      if (next !== undefined && clean(at, next)) periods.push((next - at) / 1000);
      const saved = lines.get(`saved ${n}`);
      const staged = lines.get(`staged ${n}`);
      if (asyncSave && staged !== undefined) blocking.push((staged - at) / 1000);
      if (!asyncSave && saved !== undefined) blocking.push((saved - at) / 1000);
      if (asyncSave && saved !== undefined) writes.push((saved - at) / 1000);
    }
  }
  const rollout = median(plain);
  const last = median(withSave);
  const fromRollouts = rollout !== undefined && last !== undefined ? (k - 1) * rollout + last : undefined;
  const fromSaves = median(periods);
  return {
    periodSeconds: fromSaves ?? fromRollouts ?? Number.NaN,
    periodFrom: fromSaves !== undefined ? 'saves' : fromRollouts !== undefined ? 'rollouts' : 'none',
    saveSeconds: median(blocking) ?? Number.NaN,
    asyncWriteSeconds: median(writes) ?? Number.NaN,
    saves,
  };
}

function median(values: number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
