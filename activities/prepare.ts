// Preparing a run: what a person typed (a full spec, or { preset, overrides }) becomes a validated spec and its
// plan, in an activity. Workflow code never resolves presets or plans itself: the result is recorded in history,
// so editing a preset, a schema default or the planner never changes how a live run replays.
import { ApplicationFailure } from '@temporalio/activity';
import { failureTypes } from '../src/failure-types.js';
import { plan } from '../src/plan/index.js';
import { deepMerge, formatProblems, resolveSpecInput } from '../src/spec/resolve.js';
import type { Spec } from '../src/spec/schema.js';
import { modelPaths } from '../src/spec/paths.js';
import { readTracker } from '../src/progress/checkpoints.js';
import { localSpec, type ActivityDeps } from './context.js';

export interface PreparedRun {
  spec: Spec;
  /** the plan's warnings (its errors stop the run before any node is touched) */
  warnings: { path: string; message: string }[];
}

/** The spec, validated; an invalid one is a permanent failure naming every problem by its path. */
export function validatedSpec(input: unknown): Spec {
  const resolved = resolveSpecInput(input);
  if (!resolved.ok) {
    throw ApplicationFailure.create({
      type: failureTypes.invalidSpec,
      message: `invalid spec:\n${formatProblems(resolved.problems)}`,
      details: [resolved.problems],
      nonRetryable: true,
    });
  }
  return resolved.spec;
}

export function prepareActivities(deps: ActivityDeps) {
  /** Validate and plan a pipeline run; plan errors fail it at once. */
  async function prepareRun(input: { spec: unknown }): Promise<PreparedRun> {
    const spec = validatedSpec(input.spec);
    const report = plan(spec);
    const errors = report.findings.filter((f) => f.severity === 'error');
    if (errors.length) {
      throw ApplicationFailure.create({
        type: failureTypes.planError,
        message: `the plan has errors:\n${errors.map((f) => `  ${f.path}: ${f.message}${f.fix ? ` (fix: ${f.fix})` : ''}`).join('\n')}`,
        details: [errors],
        nonRetryable: true,
      });
    }
    return { spec, warnings: report.findings.filter((f) => f.severity !== 'info') };
  }

  /**
   * A retraining round: the scheduled spec continued from the latest checkpoint of its save directory for `rollouts`
   * more rollouts (optionally on new prompt data), validated.
   */
  async function prepareRetrain(input: {
    spec: unknown;
    rollouts: number;
    promptData?: string;
  }): Promise<{ spec: Spec; from: number }> {
    const base = validatedSpec(input.spec);
    if (!Number.isInteger(input.rollouts) || input.rollouts < 1 || input.rollouts > maxRetrainRollouts) {
      throw ApplicationFailure.nonRetryable(
        `rollouts must be an integer from 1 to ${maxRetrainRollouts}, not ${String(input.rollouts)}`,
        failureTypes.invalidSpec,
      );
    }
    const tracker = await readTracker(modelPaths(localSpec(base, deps)).save);
    const from = typeof tracker === 'number' ? tracker : -1;
    const rollout: Record<string, unknown> = { numRollout: from + 1 + input.rollouts };
    if (input.promptData) rollout.promptData = input.promptData;
    return { spec: validatedSpec(deepMerge(base, { rollout })), from };
  }

  return { prepareRun, prepareRetrain };
}

/** One retraining round adds at most this many rollouts. */
const maxRetrainRollouts = 1_000_000;
