// What a schedule starts: continue from the latest checkpoint of the model's save directory for N more rollouts
// (optionally on new prompt data), then promote the result when its eval score beats the promoted checkpoint.
// The preparation steps of the pipeline are skipped by their checks.
import { ApplicationFailure, executeChild, log, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import { deepMerge, formatProblems, resolveSpecInput } from '../src/spec/resolve.js';
import { failureTypes } from './definitions.js';
import { quick } from './options.js';
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
  const resolved = resolveSpecInput(input.spec);
  if (!resolved.ok) {
    throw ApplicationFailure.create({
      type: failureTypes.invalidSpec,
      message: `invalid spec:\n${formatProblems(resolved.problems)}`,
      nonRetryable: true,
    });
  }
  if (!Number.isInteger(input.rollouts) || input.rollouts < 1) {
    throw ApplicationFailure.nonRetryable('rollouts must be a positive integer', failureTypes.invalidSpec);
  }
  const q = proxyActivities<Activities>(quick(resolved.spec));
  const { tracker } = await q.readLatestCheckpoint({ spec: resolved.spec });
  const numRollout = tracker + 1 + input.rollouts;
  const overrides: Record<string, unknown> = { rollout: { numRollout } };
  if (input.promptData) (overrides.rollout as Record<string, unknown>).promptData = input.promptData;
  const spec = deepMerge(resolved.spec, overrides);
  log.info('retraining', { from: tracker, to: numRollout - 1 });
  const pipelineId = `${workflowInfo().workflowId}-pipeline`;
  const result = await executeChild(pipeline, { workflowId: pipelineId, args: [spec] });
  const train = result.steps.find((s) => s.kind === 'train')?.outputs as
    { lastCheckpoint?: number; lastCheckpointEvalScore?: number } | undefined;
  return await q.promoteIfBetter({
    spec: resolved.spec,
    iteration: train?.lastCheckpoint,
    score: train?.lastCheckpointEvalScore,
    runId: workflowInfo().workflowId,
  });
}
