// Retraining's bookkeeping: where training stands (the tracker), and promotion of a better checkpoint.
import { log } from '@temporalio/activity';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readTracker } from '../src/progress/checkpoints.js';
import { modelPaths } from '../src/spec/paths.js';
import type { Spec } from '../src/spec/schema.js';
import { localSpec, type ActivityDeps } from './context.js';

export interface Promotion {
  iteration: number;
  score: number;
  runId: string;
  promotedAt: string;
}

export interface PromotedFile extends Promotion {
  /** earlier promotions, newest first */
  history: Promotion[];
}

export const promotedFileName = 'promoted.json';

export function promotionActivities(deps: ActivityDeps) {
  async function readLatestCheckpoint(input: { spec: Spec }): Promise<{ tracker: number }> {
    const tracker = await readTracker(modelPaths(localSpec(input.spec, deps)).save);
    return { tracker: typeof tracker === 'number' ? tracker : -1 };
  }

  /** Promote when the new checkpoint's eval beats the promoted one; promoted.json keeps the previous ones. */
  async function promoteIfBetter(input: { spec: Spec; iteration?: number; score?: number; runId: string }) {
    const saveDir = modelPaths(localSpec(input.spec, deps)).save;
    const file = join(saveDir, promotedFileName);
    const current = await readFile(file, 'utf8').then(
      (text) => JSON.parse(text) as PromotedFile,
      () => undefined,
    );
    const previous = current ? { iteration: current.iteration, score: current.score, runId: current.runId } : undefined;
    if (input.iteration === undefined || input.score === undefined) {
      return {
        promoted: false,
        iteration: input.iteration,
        score: input.score,
        previous,
        reason: 'no eval score at the last checkpoint',
      };
    }
    if (current && input.score <= current.score) {
      return {
        promoted: false,
        iteration: input.iteration,
        score: input.score,
        previous,
        reason: `eval ${input.score.toFixed(4)} does not beat the promoted ${current.score.toFixed(4)} (iteration ${current.iteration})`,
      };
    }
    const next: PromotedFile = {
      iteration: input.iteration,
      score: input.score,
      runId: input.runId,
      promotedAt: new Date().toISOString(),
      history: current
        ? [
            {
              iteration: current.iteration,
              score: current.score,
              runId: current.runId,
              promotedAt: current.promotedAt,
            },
            ...current.history,
          ]
        : [],
    };
    await writeFile(`${file}.tmp`, JSON.stringify(next, null, 2));
    await rename(`${file}.tmp`, file);
    log.info('checkpoint promoted', { iteration: input.iteration, score: input.score });
    return {
      promoted: true,
      iteration: input.iteration,
      score: input.score,
      previous,
      reason: current
        ? `eval ${input.score.toFixed(4)} beats the promoted ${current.score.toFixed(4)} (iteration ${current.iteration})`
        : 'first promotion',
    };
  }

  return { readLatestCheckpoint, promoteIfBetter };
}
