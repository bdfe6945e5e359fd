// Hang timeouts that fit a run's own timeline. A phase is guarded by `policies.hang.<phase>`: supervision calls the
// job hung when the phase shows no work for that long. Each phase's expected length comes from the run's reliability
// estimates (the same figures `keel plan` models ETTR with), so a preset derives its timeouts from them, and the plan
// reports a timeout shorter than the phase it guards. Pure: safe to import from presets and workflow code.
import { durationMs } from './duration.js';

/** The reliability estimates a phase's length is read from (reliability.* of a spec). */
export interface PhaseEstimates {
  restartTime: string;
  rolloutTime: string;
  checkpointSaveTime: string;
}

/** A derived timeout is this many times the phase it guards: a slow phase is not a hang, a stuck one is found. */
export const hangMargin = 2;

export type HangPhase = 'startup' | 'rollout' | 'eval' | 'checkpointSave';

/**
 * How long each phase is expected to last, in ms, and what that estimate is made of (said in the plan's finding).
 * Start-up: the restart (loading the weights, starting the engines) and then the eval before rollout 0 and rollout 0
 * itself, all before the first rollout line. An eval is bounded by a rollout (fewer, shorter samples).
 */
export function phaseLengths(e: PhaseEstimates): Record<HangPhase, { ms: number; estimate: string }> {
  const restart = durationMs(e.restartTime);
  const rollout = durationMs(e.rolloutTime);
  const save = durationMs(e.checkpointSaveTime);
  return {
    startup: {
      ms: restart + rollout,
      estimate: `the expected restart ${e.restartTime} (reliability.restartTime) and the first eval and rollout ${e.rolloutTime} (reliability.rolloutTime)`,
    },
    rollout: { ms: rollout, estimate: `a rollout ${e.rolloutTime} (reliability.rolloutTime)` },
    eval: { ms: rollout, estimate: `an eval, at most a rollout ${e.rolloutTime} (reliability.rolloutTime)` },
    checkpointSave: { ms: save, estimate: `a save ${e.checkpointSaveTime} (reliability.checkpointSaveTime)` },
  };
}

/** `policies.hang` derived from the estimates: `hangMargin` times each phase, in whole minutes. */
export function hangFromEstimates(e: PhaseEstimates): Record<HangPhase, string> {
  const lengths = phaseLengths(e);
  const minutes = (ms: number) => `${Math.max(1, Math.ceil((hangMargin * ms) / 60_000))}m`;
  return {
    startup: minutes(lengths.startup.ms),
    rollout: minutes(lengths.rollout.ms),
    eval: minutes(lengths.eval.ms),
    checkpointSave: minutes(lengths.checkpointSave.ms),
  };
}
