// Megatron/slime checkpoint directories on shared storage: the tracker file, iter_* directories, the converter's
// release/ checkpoint and slime's dataset state. The tracker file is the truth; a directory it never named is partial.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { readFileBounded, StorageError } from '../storage/index.js';

export const trackerFileName = 'latest_checkpointed_iteration.txt';
const iterationDirPattern = /^iter_(\d{7,})$/;
const datasetStatePattern = /^global_dataset_state_dict_(\d+)\.pt$/;
const distcpPattern = /^__\d+_\d+\.distcp$/;

export type Tracker = number | 'release';

export interface IterationDir {
  iteration: number;
  dir: string;
  /** Named by the tracker (now or earlier: it is not newer than the tracker) and holds a torch_dist layout. */
  complete: boolean;
  named: boolean;
  /** Why an iteration is not complete. */
  reason?: string;
}

export interface SaveDirInspection {
  tracker: Tracker | undefined;
  iterations: IterationDir[];
  /** Rollout ids with a `rollout/global_dataset_state_dict_{id}.pt` file. */
  datasetStates: number[];
  /** Iterations the tracker never named (a crash mid-save, or a save in progress). */
  partial: number[];
}

export class CheckpointTrackerError extends Error {
  constructor(file: string, content: string) {
    super(`unreadable checkpoint tracker ${file}: ${JSON.stringify(content.slice(0, 80))}`);
    this.name = 'CheckpointTrackerError';
  }
}

export function iterationDirName(iteration: number): string {
  return `iter_${String(iteration).padStart(7, '0')}`;
}

/**
 * The iteration an `iter_*` name is the checkpoint of, when it is the name Megatron writes (`iter_{:07d}`): a stray
 * `iter_00000019` is not iteration 19's directory, and neither slime nor keel (retention, resume) takes it for one.
 */
export function iterationOfDirName(name: string): number | undefined {
  const match = iterationDirPattern.exec(name);
  if (!match) return undefined;
  const iteration = Number(match[1]);
  return Number.isSafeInteger(iteration) && iterationDirName(iteration) === name ? iteration : undefined;
}

export function datasetStatePath(saveDir: string, rolloutId: number): string {
  return path.join(saveDir, 'rollout', `global_dataset_state_dict_${rolloutId}.pt`);
}

/** The tracker: an iteration, `release` (a converted checkpoint), or undefined when absent or still empty. */
export async function readTracker(saveDir: string): Promise<Tracker | undefined> {
  const file = path.join(saveDir, trackerFileName);
  const content = await readTextIfExists(file);
  if (content === undefined) return undefined;
  const value = content.trim();
  if (value === '') return undefined;
  if (value === 'release') return 'release';
  // A tracker is a small integer: anything else (400 digits read as Infinity) is unreadable, never a checkpoint.
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) throw new CheckpointTrackerError(file, content);
  return Number(value);
}

export async function inspectSaveDir(saveDir: string): Promise<SaveDirInspection> {
  const tracker = await readTracker(saveDir);
  const entries = await readDirIfExists(saveDir);
  const iterations: IterationDir[] = [];
  for (const entry of entries) {
    const iteration = iterationOfDirName(entry.name);
    if (iteration === undefined || !entry.isDirectory()) continue;
    const dir = path.join(saveDir, entry.name);
    const named = typeof tracker === 'number' && iteration <= tracker;
    const layoutProblems = named ? await torchDistLayoutProblems(dir) : [];
    const record: IterationDir = { iteration, dir, complete: named && layoutProblems.length === 0, named };
    if (!named) record.reason = `not named by the tracker (${tracker ?? 'absent'})`;
    else if (layoutProblems.length > 0) record.reason = layoutProblems.join('; ');
    iterations.push(record);
  }
  iterations.sort((a, b) => a.iteration - b.iteration);
  const datasetStates = (await readDirIfExists(path.join(saveDir, 'rollout')))
    .map((entry) => datasetStatePattern.exec(entry.name))
    .filter((match): match is RegExpExecArray => match !== null)
    .map((match) => Number(match[1]))
    .sort((a, b) => a - b);
  const partial = iterations.filter((it) => !it.named).map((it) => it.iteration);
  return { tracker, iterations, datasetStates, partial };
}

/**
 * The complete checkpoints saved after `after` up to `tracker`, oldest first: what a supervisor that polls the tracker
 * may have missed when the trainer saved twice between two polls (a slow poll, a worker restart).
 */
export async function completeIterationsBetween(saveDir: string, after: number, tracker: number): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readDirIfExists(saveDir)) {
    const iteration = iterationOfDirName(entry.name);
    if (iteration === undefined || !entry.isDirectory()) continue;
    if (iteration <= after || iteration > tracker) continue;
    if ((await torchDistLayoutProblems(path.join(saveDir, entry.name))).length === 0) found.push(iteration);
  }
  if (!found.includes(tracker)) found.push(tracker);
  return found.sort((a, b) => a - b);
}

export interface CompletionCheck {
  complete: boolean;
  /** `complete`, or every problem found, joined. */
  reason: string;
  problems: string[];
}

/** Is the HF -> torch_dist conversion output in `dir` complete (docs/slime.md, "Conversion")? */
export async function checkTorchDistRelease(dir: string): Promise<CompletionCheck> {
  const problems: string[] = [];
  try {
    const tracker = await readTracker(dir);
    if (tracker !== 'release') problems.push(`tracker reads ${tracker ?? 'nothing'}, not release`);
  } catch (error) {
    if (!(error instanceof CheckpointTrackerError)) throw error;
    problems.push(error.message);
  }
  const releaseDir = path.join(dir, 'release');
  if (!(await isDirectory(releaseDir))) problems.push('release/ is missing');
  else problems.push(...(await torchDistLayoutProblems(releaseDir)).map((problem) => `release/: ${problem}`));
  if (await exists(path.join(dir, iterationDirName(1)))) problems.push(`${iterationDirName(1)}/ is still present`);
  return completion(problems);
}

/** The files Megatron's torch_dist format writes: `.metadata` (done), shards, and metadata.json naming the backend. */
export async function torchDistLayoutProblems(dir: string): Promise<string[]> {
  const names = new Set((await readDirIfExists(dir)).map((entry) => entry.name));
  const problems: string[] = [];
  if (!names.has('.metadata')) problems.push('.metadata is missing');
  if (names.has('.metadata.tmp')) problems.push('.metadata.tmp is present (save not finished)');
  if (![...names].some((name) => distcpPattern.test(name))) problems.push('no __*_*.distcp shard');
  let metadata: string | undefined;
  try {
    metadata = names.has('metadata.json') ? await readTextIfExists(path.join(dir, 'metadata.json')) : undefined;
  } catch (error) {
    if (!(error instanceof StorageError)) throw error;
    problems.push(`metadata.json ${error.message.slice(error.path.length + 2)}`);
    return problems;
  }
  if (metadata === undefined) problems.push('metadata.json is missing');
  else if (shardedBackend(metadata) !== 'torch_dist')
    problems.push('metadata.json does not name sharded_backend torch_dist');
  return problems;
}

export type ResumeCheck = { ok: true } | { ok: false; reason: string };

/**
 * After a (re)start with `--load saveDir`: did training resume where the tracker says? slime restarts at tracker + 1
 * (0 without a tracker) and needs the dataset state of the tracker's rollout, else it silently restarts the data.
 */
export async function checkResume(
  saveDir: string,
  tracker: Tracker | undefined,
  firstLoggedRollout: number,
): Promise<ResumeCheck> {
  const expected = typeof tracker === 'number' ? tracker + 1 : 0;
  const problems: string[] = [];
  if (firstLoggedRollout !== expected) {
    problems.push(
      `first rollout logged is ${firstLoggedRollout}, expected ${expected} (tracker ${tracker ?? 'absent'})`,
    );
  }
  if (typeof tracker === 'number' && !(await exists(datasetStatePath(saveDir, tracker)))) {
    problems.push(`dataset state rollout/global_dataset_state_dict_${tracker}.pt is missing`);
  }
  return problems.length === 0 ? { ok: true } : { ok: false, reason: problems.join('; ') };
}

function completion(problems: string[]): CompletionCheck {
  return {
    complete: problems.length === 0,
    reason: problems.length === 0 ? 'complete' : problems.join('; '),
    problems,
  };
}

function shardedBackend(json: string): unknown {
  try {
    const parsed: unknown = JSON.parse(json);
    return typeof parsed === 'object' && parsed !== null
      ? (parsed as Record<string, unknown>).sharded_backend
      : undefined;
  } catch {
    return undefined;
  }
}

/** A small file on shared storage (the tracker, metadata.json): bounded, never a FIFO (src/storage). */
function readTextIfExists(file: string): Promise<string | undefined> {
  return readFileBounded(file, { maxBytes: 1024 * 1024 });
}

async function readDirIfExists(dir: string) {
  try {
    return await fs.readdir(dir, { withFileTypes: true });
  } catch (error) {
    if (isNotFound(error)) return [];
    throw error;
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.stat(file);
    return true;
  } catch (error) {
    if (isNotFound(error)) return false;
    throw error;
  }
}

async function isDirectory(dir: string): Promise<boolean> {
  try {
    return (await fs.stat(dir)).isDirectory();
  } catch (error) {
    if (isNotFound(error)) return false;
    throw error;
  }
}

function isNotFound(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
