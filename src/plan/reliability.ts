// The reliability model of `keel plan`: the expected effective training time ratio (ETTR) of a run and the save
// interval that maximises it. Pure. The model, the defaults and how to tune them: docs/reliability.md.
//
// The job holds G GPUs, each failing f times per GPU-hour, so failures arrive on average every M = 1 / (f·G) hours
// of wall time (the MTBF). Saving every k rollouts of r each puts tau = k·r of training between two saves. A save
// stops training for delta; a failure costs the restart R (detection, heal, resubmit, trainer start-up) plus the
// training since the last save, which is half an interval, tau/2, on average. To first order in delta/tau and tau/M
// (Young, 1974), the fraction of wall time spent on training that is kept is
//
//   ETTR(tau) = 1 - delta/tau - (R + tau/2) / M
//               (saves)        (restart and lost work, per failure, times failures per unit of time)
//
// dETTR/dtau = delta/tau^2 - 1/(2M) = 0 gives Young's interval tau* = sqrt(2·delta·M). ETTR is concave in tau, so
// the best whole number of rollouts is floor(tau*/r) or ceil(tau*/r), whichever gives the higher ETTR; a number
// above the run's length means the same as the run's length (slime also saves at the last rollout).
import { durationMs } from '../spec/duration.js';
import { llama3FailuresPerGpuHour, reliabilitySchema, type Spec } from '../spec/schema.js';
import type { Finding } from './findings.js';

/** A configured interval below half or above twice the best is "far" from it: see `farFromBest`. */
export const FAR_BELOW = 0.5;
export const FAR_ABOVE = 2;
/** Below this the first-order model no longer describes the run (failures dominate): said as a warning. */
const MODEL_HOLDS_ABOVE_ETTR = 0.5;

export interface ReliabilityModel {
  /** delta: training stops this long for one checkpoint save */
  saveSeconds: number;
  /** R: from a failure to the first rollout of the resubmitted job */
  restartSeconds: number;
  /** r: one rollout */
  rolloutSeconds: number;
  /** M: mean time between failures of the whole job */
  mtbfSeconds: number;
  /**
   * s: the share of failures that restart the job (default 1). With slime's --use-fault-tolerance a rollout-engine
   * failure is restarted inside the job: neither a restart nor lost work.
   */
  restartedShare?: number;
  /**
   * Lost work a failure adds beyond half an interval (default 0). With an async save, training goes on while the save
   * is written for d (the full save time): a failure in that window loses the interval before it too, so the
   * expected loss is tau/2 + d, while training stops only for the staging part (saveSeconds).
   */
  extraLossSeconds?: number;
  /**
   * The share of the save interval a restarting failure loses on average (default 0.5: failures that arrive at random
   * times lose half an interval). A rehearsal, which places its few failures itself, gives its own.
   */
  lostShare?: number;
}

/** ETTR(k·r) = 1 - delta/(k·r) - s·(R + l·k·r + d)/M, l = 1/2 unless given, floored at 0 (a run that keeps no work). */
export function expectedEttr(model: ReliabilityModel, saveInterval: number): number {
  const tau = saveInterval * model.rolloutSeconds;
  const perFailure = model.restartSeconds + (model.lostShare ?? 0.5) * tau + (model.extraLossSeconds ?? 0);
  return Math.max(0, 1 - model.saveSeconds / tau - ((model.restartedShare ?? 1) * perFailure) / model.mtbfSeconds);
}

/** Young's optimum tau* = sqrt(2·delta·M/s), in seconds of training between saves. */
export function youngIntervalSeconds(model: ReliabilityModel): number {
  const share = model.restartedShare ?? 1;
  return share === 0 ? Number.POSITIVE_INFINITY : Math.sqrt((2 * model.saveSeconds * model.mtbfSeconds) / share);
}

/** The whole number of rollouts in 1..maxInterval with the highest ETTR (ETTR is concave: a neighbour of tau* / r). */
export function bestSaveInterval(model: ReliabilityModel, maxInterval: number): number {
  const x = youngIntervalSeconds(model) / model.rolloutSeconds;
  const below = Math.min(maxInterval, Math.max(1, Math.floor(x)));
  const above = Math.min(maxInterval, Math.max(1, Math.ceil(x)));
  return expectedEttr(model, above) > expectedEttr(model, below) ? above : below;
}

/** Configured over best outside [FAR_BELOW, FAR_ABOVE]: there the overhead the interval controls is 25% above its least. */
export function farFromBest(configured: number, best: number): boolean {
  const ratio = configured / best;
  return ratio < FAR_BELOW || ratio > FAR_ABOVE;
}

export interface ReliabilityEstimate {
  /** GPUs the job holds (training, plus rollout GPUs when not colocated); spares are idle and not counted */
  gpus: number;
  failuresPerGpuHour: number;
  /** the rate is Llama 3's (the default), not one the spec gives */
  rateIsDefault: boolean;
  failuresPerDay: number;
  mtbfHours: number;
  /** ckpt.saveInterval, and what slime does with it: at most the run's length */
  configuredSaveInterval: number;
  /** the reliability.* times the spec does not give: without them there is no ETTR estimate */
  missing: string[];
  checkpointSaveSeconds?: number;
  restartSeconds?: number;
  rolloutSeconds?: number;
  /** ETTR at the configured save interval */
  expectedEttr?: number;
  /** the save interval (in rollouts, as slime's --save-interval counts) that maximises the expected ETTR */
  optimalSaveInterval?: number;
  optimalEttr?: number;
  /** the best interval is the run's length: Young's is longer than the run, so save only at the end */
  optimalIsRunLength?: boolean;
  /** Young's tau* = sqrt(2·delta·M) in hours, before rounding to whole rollouts */
  youngIntervalHours?: number;
  /** numRollout rollouts of training, divided by the expected ETTR */
  expectedWallHours?: number;
  expectedFailures?: number;
  /** what slime's levers would give (the blocking part of an async save; engine failures restarted in the job) */
  levers?: Lever[];
}

/** A what-if: the expected ETTR with a lever of slime's on, at the configured and at the best save interval. */
export interface Lever {
  name: 'async save' | 'engine fault tolerance' | 'both';
  /** what the figures assume, in words */
  assumes: string;
  expectedEttr: number;
  optimalSaveInterval: number;
  optimalEttr: number;
}

export function estimateReliability(spec: Spec, findings: Finding[]): ReliabilityEstimate {
  // An absent section is the section with its defaults (the failure rate), taken from the schema itself.
  const given = spec.reliability ?? reliabilitySchema.parse({});
  const { distributed } = spec;
  const gpus =
    distributed.actorNumNodes * distributed.actorNumGpusPerNode +
    (distributed.colocate ? 0 : (distributed.rolloutNumGpus ?? 0));
  const numRollout = spec.rollout.numRollout;
  const configured = Math.min(spec.ckpt.saveInterval, numRollout);
  const mtbfHours = 1 / (given.failuresPerGpuHour * gpus);
  const base = {
    gpus,
    failuresPerGpuHour: given.failuresPerGpuHour,
    rateIsDefault: given.failuresPerGpuHour === llama3FailuresPerGpuHour,
    failuresPerDay: 24 / mtbfHours,
    mtbfHours,
    configuredSaveInterval: configured,
  };
  const times = {
    checkpointSaveTime: given.checkpointSaveTime,
    restartTime: given.restartTime,
    rolloutTime: given.rolloutTime,
  };
  const missing = Object.entries(times)
    .filter(([, value]) => value === undefined)
    .map(([key]) => `reliability.${key}`);
  if (given.checkpointSaveTime === undefined || given.restartTime === undefined || given.rolloutTime === undefined) {
    findings.push({
      severity: 'info',
      path: 'reliability',
      message: `no ETTR estimate: ${missing.join(', ')} not given`,
      fix: 'set them from a measured run (docs/reliability.md says where to read each)',
    });
    return { ...base, missing };
  }
  const model: ReliabilityModel = {
    saveSeconds: durationMs(given.checkpointSaveTime) / 1000,
    restartSeconds: durationMs(given.restartTime) / 1000,
    rolloutSeconds: durationMs(given.rolloutTime) / 1000,
    mtbfSeconds: mtbfHours * 3600,
  };
  const expected = expectedEttr(model, configured);
  const optimal = bestSaveInterval(model, numRollout);
  const optimalEttr = expectedEttr(model, optimal);
  const expectedWallHours = expected > 0 ? (numRollout * model.rolloutSeconds) / 3600 / expected : undefined;
  const estimate: ReliabilityEstimate = {
    ...base,
    missing,
    checkpointSaveSeconds: model.saveSeconds,
    restartSeconds: model.restartSeconds,
    rolloutSeconds: model.rolloutSeconds,
    expectedEttr: expected,
    optimalSaveInterval: optimal,
    optimalEttr,
    optimalIsRunLength: youngIntervalSeconds(model) / model.rolloutSeconds >= numRollout,
    youngIntervalHours: youngIntervalSeconds(model) / 3600,
    expectedWallHours,
    expectedFailures: expectedWallHours === undefined ? undefined : expectedWallHours / mtbfHours,
  };
  checkSaveInterval(spec, model, estimate, findings);
  estimate.levers = levers(spec, given, model, findings);
  return estimate;
}

/**
 * slime's levers the seed does not use, as what-ifs: Megatron's --async-save (training stops only for the staging
 * part of a save, reliability.asyncSaveBlockingTime) and --use-fault-tolerance (a share of failures,
 * reliability.engineFailureShare, is restarted inside the job). Each is said as a finding with its fix.
 */
function levers(
  spec: Spec,
  given: NonNullable<Spec['reliability']>,
  model: ReliabilityModel,
  findings: Finding[],
): Lever[] {
  const numRollout = spec.rollout.numRollout;
  const configured = Math.min(spec.ckpt.saveInterval, numRollout);
  const hasFlag = (flag: string) => spec.extraArgs.includes(flag);
  const asyncSave =
    given.asyncSaveBlockingTime === undefined || hasFlag('--async-save')
      ? undefined
      : { saveSeconds: durationMs(given.asyncSaveBlockingTime) / 1000, extraLossSeconds: model.saveSeconds };
  const tolerance =
    given.engineFailureShare === undefined || hasFlag('--use-fault-tolerance')
      ? undefined
      : { restartedShare: 1 - given.engineFailureShare };
  const lever = (name: Lever['name'], assumes: string, changed: Partial<ReliabilityModel>): Lever => {
    const m = { ...model, ...changed };
    const optimal = bestSaveInterval(m, numRollout);
    return {
      name,
      assumes,
      expectedEttr: expectedEttr(m, configured),
      optimalSaveInterval: optimal,
      optimalEttr: expectedEttr(m, optimal),
    };
  };
  const out: Lever[] = [];
  const base = expectedEttr(model, configured).toFixed(3);
  if (asyncSave) {
    const l = lever(
      'async save',
      `a save blocks training for ${fmtSeconds(asyncSave.saveSeconds)} of its ${fmtSeconds(model.saveSeconds)} (reliability.asyncSaveBlockingTime)`,
      asyncSave,
    );
    out.push(l);
    findings.push({
      severity: 'info',
      path: 'extraArgs',
      message:
        `with an async save, ${l.assumes}: expected ETTR ${l.expectedEttr.toFixed(3)} saving every ${configured} ` +
        `rollouts (${l.optimalEttr.toFixed(3)} every ${l.optimalSaveInterval}), against ${base} now`,
      fix: "add --async-save to extraArgs (Megatron's; slime's save returns after staging and the next save waits for the last)",
    });
  }
  if (tolerance) {
    const share = given.engineFailureShare!;
    const l = lever(
      'engine fault tolerance',
      `${Math.round(share * 100)}% of failures are rollout-engine failures restarted inside the job (reliability.engineFailureShare)`,
      tolerance,
    );
    out.push(l);
    findings.push({
      severity: 'info',
      path: 'extraArgs',
      message:
        `with rollout-engine fault tolerance, if ${l.assumes}: expected ETTR ${l.expectedEttr.toFixed(3)} saving every ` +
        `${configured} rollouts (${l.optimalEttr.toFixed(3)} every ${l.optimalSaveInterval}), against ${base} now`,
      fix: "add --use-fault-tolerance to extraArgs (slime health-checks its SGLang engines and restarts them in the job; keel's supervision counts such a restart as neither a failure nor lost work)",
    });
  }
  if (asyncSave && tolerance) out.push(lever('both', 'both of the above', { ...asyncSave, ...tolerance }));
  return out;
}

function checkSaveInterval(
  spec: Spec,
  model: ReliabilityModel,
  estimate: ReliabilityEstimate,
  findings: Finding[],
): void {
  const configured = estimate.configuredSaveInterval;
  const optimal = estimate.optimalSaveInterval!;
  const ettr = (k: number) => expectedEttr(model, k).toFixed(3);
  if (estimate.optimalEttr! < MODEL_HOLDS_ABOVE_ETTR) {
    findings.push({
      severity: 'warning',
      path: 'reliability',
      message:
        `a failure every ${fmtHours(estimate.mtbfHours)} against a ${fmtSeconds(model.restartSeconds)} restart and a ` +
        `${fmtSeconds(model.saveSeconds)} save: even the best save interval keeps under half the run's time ` +
        `(ETTR ${ettr(optimal)}), where the first-order model no longer holds`,
      fix: 'cut the restart time (spares, faster start-up) or check reliability.failuresPerGpuHour',
    });
    return;
  }
  const numRollout = spec.rollout.numRollout;
  if (!farFromBest(configured, optimal)) return;
  if (estimate.optimalIsRunLength) {
    // failures over the run's wall time when saving only at the end (the configured interval may keep nothing)
    const failures = (numRollout * model.rolloutSeconds) / estimate.optimalEttr! / model.mtbfSeconds;
    findings.push({
      severity: 'info',
      path: 'ckpt.saveInterval',
      message:
        `${fmtFailures(failures)} expected over the run: the expected ETTR is ` +
        `highest when saving only at the end (${ettr(numRollout)}, against ${ettr(configured)} saving every ` +
        `${configured} rollouts); checkpoints more often are insurance and what evals and retention work with`,
    });
    return;
  }
  findings.push({
    severity: 'warning',
    path: 'ckpt.saveInterval',
    message:
      `saving every ${configured} rollouts is ${(configured / optimal).toFixed(2)}x the interval with the highest ` +
      `expected ETTR: ${optimal} rollouts (Young: sqrt(2 x ${fmtSeconds(model.saveSeconds)} save x ` +
      `${fmtHours(estimate.mtbfHours)} MTBF) = ${fmtHours(estimate.youngIntervalHours!)}); expected ETTR ` +
      `${ettr(configured)} against ${ettr(optimal)} (figures from reliability.*, docs/reliability.md)`,
    fix: `set ckpt.saveInterval near ${optimal}${alignedHint(spec, model, optimal)}, or correct the reliability.* figures`,
  });
}

/** The multiple of eval.evalInterval nearest the optimum, so that every checkpoint still gets an eval score. */
function alignedHint(spec: Spec, model: ReliabilityModel, optimal: number): string {
  const every = spec.eval.evalInterval;
  if (optimal % every === 0 || every > spec.rollout.numRollout) return '';
  const lower = Math.max(1, Math.floor(optimal / every)) * every;
  const upper = Math.ceil(optimal / every) * every;
  const candidates = [lower, upper].filter((k) => k <= spec.rollout.numRollout);
  const aligned = candidates.reduce((a, b) => (expectedEttr(model, b) > expectedEttr(model, a) ? b : a));
  return ` (${aligned}, a multiple of eval.evalInterval ${every}, gives ${expectedEttr(model, aligned).toFixed(3)})`;
}

function fmtFailures(count: number): string {
  return count < 0.01 ? 'fewer than 0.01 failures are' : `about ${count.toFixed(2)} failures are`;
}

export function fmtSeconds(seconds: number): string {
  if (seconds >= 3600) return fmtHours(seconds / 3600);
  if (seconds >= 60) return `${+(seconds / 60).toFixed(1)} min`;
  return `${+seconds.toFixed(1)} s`;
}

export function fmtHours(hours: number): string {
  if (hours >= 48) return `${+hours.toFixed(0)} h (${+(hours / 24).toFixed(1)} days)`;
  if (hours >= 1) return `${+hours.toFixed(1)} h`;
  return fmtSeconds(hours * 3600);
}
