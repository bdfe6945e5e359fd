// What a schedule starts: continue from the latest checkpoint of the model's save directory for N more rollouts
// (optionally on new prompt data), then promote the result when its eval score beats the promoted checkpoint.
// The preparation steps of the pipeline are skipped by their checks.
import {
  ActivityFailure,
  ApplicationFailure,
  executeChild,
  log,
  ParentClosePolicy,
  proxyActivities,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import { prepare, quick } from './options.js';
import { pipeline } from './pipeline.js';

export interface RetrainInput {
  /** a full spec or { preset, overrides } */
  spec: unknown;
  /** rollouts to add after the latest checkpoint */
  rollouts: number;
  /** new prompt data for this round (rollout.promptData) */
  promptData?: string;
}

export interface PromotionDecision {
  promoted: boolean;
  iteration?: number;
  score?: number;
  previous?: { iteration: number; score: number; runId: string };
  reason: string;
}

export async function retrain(input: RetrainInput): Promise<PromotionDecision> {
  // The spec, the latest checkpoint and this round's numRollout are read once, in an activity (recorded in history).
  const { spec, from } = await proxyActivities<Activities>(prepare)
    .prepareRetrain(input)
    .catch((error: unknown) => {
      throw error instanceof ActivityFailure && error.cause instanceof ApplicationFailure ? error.cause : error;
    });
  const q = proxyActivities<Activities>(quick(spec));
  log.info('retraining', { from, to: spec.rollout.numRollout - 1 });
  const result = await executeChild(pipeline, {
    workflowId: `${workflowInfo().workflowId}-pipeline`,
    args: [spec],
    parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
  });
  const train = result.steps.find((s) => s.kind === 'train')?.outputs as
    { lastCheckpoint?: number; lastCheckpointEvalScore?: number } | undefined;
  return await q.promoteIfBetter({
    spec,
    iteration: train?.lastCheckpoint,
    score: train?.lastCheckpointEvalScore,
    runId: workflowInfo().workflowId,
  });
}
