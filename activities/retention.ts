// Checkpoint retention as a durable activity. An R1 checkpoint is ~9.4 TB in thousands of files, and deleting it on
// shared storage can take hours: a checkpoint to delete is first renamed out of the iter_* namespace (atomically: from
// then on no reader, resume or plan takes it for a checkpoint), then emptied file by file with a heartbeat after
// each, and a retried attempt first finishes the deletions an earlier attempt began.
import { log } from '@temporalio/activity';
import { readdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { inspectSaveDir, iterationDirName } from '../src/progress/checkpoints.js';
import { planNextDeletion, planRetention } from '../src/progress/retention.js';
import { modelPaths } from '../src/spec/paths.js';
import type { Spec } from '../src/spec/schema.js';
import { readFileBounded, removeTreeIn } from '../src/storage/index.js';
import { activitySignal, heartbeat, localSpec, type ActivityDeps } from './context.js';
import { promotedFileName } from './promotion.js';

export interface RetentionInput {
  spec: Spec;
  /** eval scores by rollout: the best checkpoint by eval is kept */
  scores: { rollout: number; score: number }[];
}

export interface RetentionResult {
  keep: number[];
  deleted: number[];
  deleteNext: number[];
}

/** A checkpoint being deleted: `iter_0000039.keel-deleting` (not a name slime or keel reads as a checkpoint). */
const deletingSuffix = '.keel-deleting';
/** Only such names are finished by a later attempt: another `*.keel-deleting` entry is not keel's to delete. */
const deletingPattern = /^iter_\d{7,}\.keel-deleting$/;

export function retentionActivities(deps: ActivityDeps) {
  /**
   * Keep the last K, every M-th and the best by eval; never the tracker's, the promoted one or a partial newer one.
   * Deletes the rest.
   */
  async function applyRetention(input: RetentionInput): Promise<RetentionResult> {
    const spec = localSpec(input.spec, deps);
    const saveDir = modelPaths(spec).save;
    const progress = { files: 0 };
    // Deletions an interrupted attempt began: finish them before planning.
    for (const name of await readSaveDir(saveDir)) {
      if (deletingPattern.test(name)) await deleteTree(saveDir, name, progress);
    }
    const { keepLast, keepEvery, keepBest } = spec.policies.retention;
    const inspection = await inspectSaveDir(saveDir);
    const scores = new Map(input.scores.map((s) => [s.rollout, s.score]));
    const promoted = await promotedIteration(saveDir);
    if (promoted === 'unreadable') {
      log.warn(`retention: ${promotedFileName} does not name the promoted checkpoint; deleting nothing until it does`, {
        saveDir,
      });
      const all = inspection.iterations.map((it) => it.iteration);
      return { keep: all, deleted: [], deleteNext: [] };
    }
    const retention = {
      iterations: inspection.iterations.map((it) => ({
        iteration: it.iteration,
        complete: it.complete,
        score: scores.get(it.iteration),
      })),
      tracker: inspection.tracker,
      promoted,
      keepLast: keepLast ?? Number.MAX_SAFE_INTEGER,
      keepEvery,
      keepBest,
    };
    const plan = planRetention(retention);
    for (const iteration of plan.delete) {
      const dir = join(saveDir, iterationDirName(iteration));
      const doomed = `${dir}${deletingSuffix}`;
      log.info('retention: deleting checkpoint', { iteration, dir });
      await rename(dir, doomed);
      await deleteTree(saveDir, `${iterationDirName(iteration)}${deletingSuffix}`, progress, iteration);
    }
    return {
      keep: plan.keep.map((k) => k.iteration),
      deleted: plan.delete,
      deleteNext: planNextDeletion({ ...retention, saveInterval: spec.ckpt.saveInterval }, plan),
    };
  }

  return { applyRetention };
}

/**
 * The iteration retraining promoted (promoted.json): none, or `unreadable` when the file exists and does not name
 * one -- then nothing is deleted, since it might name a checkpoint that must be kept.
 */
async function promotedIteration(saveDir: string): Promise<number | undefined | 'unreadable'> {
  const text = await readFileBounded(join(saveDir, promotedFileName), { maxBytes: promotedMaxBytes }).catch(() => '');
  if (text === undefined) return undefined;
  try {
    const iteration = (JSON.parse(text) as { iteration?: unknown }).iteration;
    return typeof iteration === 'number' && Number.isSafeInteger(iteration) ? iteration : 'unreadable';
  } catch {
    return 'unreadable';
  }
}

/**
 * The save dir's entries: none before the first save (ENOENT); any other failure (permissions, a stale mount) is an
 * error, never "no checkpoints": read as empty, retention would keep every checkpoint until storage fills.
 */
async function readSaveDir(saveDir: string): Promise<string[]> {
  try {
    return await readdir(saveDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new Error(
      `retention cannot read the save dir ${saveDir} on the keel worker (${(error as Error).message}): the worker must ` +
        'see storage.baseDir as the nodes do (docs/operations.md)',
      { cause: error },
    );
  }
}

/** promoted.json is a few KB; a larger one is not keel's (and is unreadable, so nothing is deleted). */
const promotedMaxBytes = 1024 * 1024;

/**
 * Delete `name` in the save dir and everything under it (src/storage: never through a symlink, never off its file
 * system), heartbeating after every entry.
 */
async function deleteTree(
  saveDir: string,
  name: string,
  progress: { files: number },
  iteration?: number,
): Promise<void> {
  const before = progress.files;
  await removeTreeIn(saveDir, name, {
    signal: activitySignal(),
    onProgress: (removed) => {
      progress.files = before + removed;
      heartbeat({ deleting: join(saveDir, name), iteration, filesDeleted: progress.files });
    },
  });
}
