// Hang timeouts against the phases they guard: a timeout shorter than a phase's expected length kills a healthy job
// as hung every time that phase runs (and the crash-loop guard then pauses the run). The expected lengths come from
// reliability.* (src/spec/hang.ts); without those figures there is nothing to compare with.
import { durationMs } from '../spec/duration.js';
import { hangFromEstimates, phaseLengths, type HangPhase } from '../spec/hang.js';
import type { Spec } from '../spec/schema.js';
import type { Finding } from './findings.js';
import { fmtSeconds } from './reliability.js';

export function checkHangTimeouts(spec: Spec, findings: Finding[]): void {
  const r = spec.reliability;
  if (!r?.restartTime || !r.rolloutTime || !r.checkpointSaveTime) return;
  const estimates = {
    restartTime: r.restartTime,
    rolloutTime: r.rolloutTime,
    checkpointSaveTime: r.checkpointSaveTime,
  };
  const lengths = phaseLengths(estimates);
  const derived = hangFromEstimates(estimates);
  const hang = spec.policies.hang;
  const configured: Record<HangPhase, { value: string; path: string }> = {
    startup: { value: hang.startup, path: 'policies.hang.startup' },
    rollout: { value: hang.rollout, path: 'policies.hang.rollout' },
    // unset: the rollout's timeout guards the eval too
    eval: { value: hang.eval ?? hang.rollout, path: hang.eval ? 'policies.hang.eval' : 'policies.hang.rollout' },
    checkpointSave: { value: hang.checkpointSave, path: 'policies.hang.checkpointSave' },
  };
  for (const phase of Object.keys(lengths) as HangPhase[]) {
    const { value, path } = configured[phase];
    const { ms, estimate } = lengths[phase];
    if (durationMs(value) >= ms) continue;
    findings.push({
      severity: 'warning',
      path,
      message:
        `${path} ${value} is shorter than the ${phaseNames[phase]} it guards ` +
        `(${fmtSeconds(ms / 1000)} expected: ${estimate}): a healthy job would be stopped as hung`,
      fix: `set ${path} to at least ${derived[phase]} (twice the expected phase), or correct the reliability.* figures`,
    });
  }
}

const phaseNames: Record<HangPhase, string> = {
  startup: 'start-up',
  rollout: 'rollout',
  eval: 'eval',
  checkpointSave: 'checkpoint save',
};
