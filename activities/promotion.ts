// Retraining's bookkeeping: where training stands (the tracker), and promotion of a better checkpoint.
import { log } from '@temporalio/activity';
import { join } from 'node:path';
import { z } from 'zod';
import { readTracker } from '../src/progress/checkpoints.js';
import { modelPaths } from '../src/spec/paths.js';
import type { Spec } from '../src/spec/schema.js';
import { readFileBounded, writeFileSafely } from '../src/storage/index.js';
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

/** promoted.json as keel writes it: anything else in the file (another writer's strings) is dropped, never copied. */
const promotionSchema = z.object({
  iteration: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  score: z.number().finite(),
  runId: z.string().max(200),
  promotedAt: z.string().max(64),
});
const promotedFileSchema = promotionSchema.extend({ history: z.array(promotionSchema).max(1000) });

/** The promotion recorded in `file`; undefined when there is none or it is not one keel wrote (then a warning). */
async function readPromoted(file: string): Promise<PromotedFile | undefined> {
  const text = await readFileBounded(file, { maxBytes: 1024 * 1024 });
  if (text === undefined) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    raw = undefined;
  }
  const parsed = promotedFileSchema.safeParse(raw);
  if (parsed.success) return parsed.data;
  log.warn(`${file} is not a promotion keel wrote; it is replaced at the next promotion`);
  return undefined;
}

export function promotionActivities(deps: ActivityDeps) {
  async function readLatestCheckpoint(input: { spec: Spec }): Promise<{ tracker: number }> {
    const tracker = await readTracker(modelPaths(localSpec(input.spec, deps)).save);
    return { tracker: typeof tracker === 'number' ? tracker : -1 };
  }

  /** Promote when the new checkpoint's eval beats the promoted one; promoted.json keeps the previous ones. */
  async function promoteIfBetter(input: { spec: Spec; iteration?: number; score?: number; runId: string }) {
    const saveDir = modelPaths(localSpec(input.spec, deps)).save;
    const file = join(saveDir, promotedFileName);
    const current = await readPromoted(file);
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
    await writeFileSafely(file, JSON.stringify(next, null, 2));
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
