// Preparing a run: what a person typed (a full spec, or { preset, overrides }) becomes a validated spec and its
// plan, in an activity. Workflow code never resolves presets or plans itself: the result is recorded in history,
// so editing a preset, a schema default or the planner never changes how a live run replays.
import { ApplicationFailure } from '@temporalio/activity';
import { preparedRun, validatedSpec, type PreparedRun } from '../src/spec/prepare.js';
import { failureTypes } from '../src/failure-types.js';
import { deepMerge } from '../src/spec/resolve.js';
import type { Spec } from '../src/spec/schema.js';
import { modelPaths } from '../src/spec/paths.js';
import { readTracker } from '../src/progress/checkpoints.js';
import { localSpec, type ActivityDeps } from './context.js';

export type { PreparedRun } from '../src/spec/prepare.js';

export function prepareActivities(deps: ActivityDeps) {
  /** Validate and plan a pipeline run; plan errors fail it at once. */
  async function prepareRun(input: { spec: unknown }): Promise<PreparedRun> {
    return preparedRun(input.spec);
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
