// The native FP8 -> BF16 cast of a checkpoint directory: shards in parallel on worker threads, each written to a
// temporary name, fsynced and renamed, then recorded in a state file, so a killed cast resumes with the shards it has
// not finished; the side files next, the index last (its presence means done). Output goes past the page cache
// (O_DIRECT) where the file system allows it: on the test machine that wrote the same bytes in 0.6x the time with a
// sixth of the kernel CPU, and a cast of R1's 1.3 TB of output does not evict everything else from memory.
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { lstat, mkdir, stat, open, readFile, readdir, rename, rm } from 'node:fs/promises';
import { indexFileName } from './check.js';
import { planCast, type CastPlan, type ShardPlan } from './plan.js';
import { readHeader } from './safetensors.js';
import { WorkerPool } from './pool.js';
import type { Task } from './tasks.js';
import { shardTasks } from './chunks.js';
import { copyAtomically, createExclusive, refuseNonRegularTargets, writeAtomically } from './output-files.js';

export interface CastProgress {
  shardsDone: string[];
  shardsTotal: number;
  bytesDone: number;
  bytesTotal: number;
}

export interface CastOptions {
  inputDir: string;
  outputDir: string;
  /** worker threads; default: the cores available */
  threads?: number;
  signal?: AbortSignal;
  onProgress?: (p: CastProgress) => void;
  /** after the cast, re-read every output tensor and compare it with the cast of the input */
  verify?: boolean;
  /** copy config.json unchanged, quantization_config included (what slime's tool does) */
  keepQuantizationConfig?: boolean;
  /** copy an FP8 tensor without a scale unchanged, with a warning (slime's behaviour), instead of failing */
  allowMissingScale?: boolean;
  /**
   * write exactly what slime's tools/fp8_cast_bf16.py writes, file for file: config.json unchanged, shards without
   * `{"format": "pt"}` metadata, the index in the input's order without the cast weights' scales (json.dump indent 2)
   */
  likeSlime?: boolean;
  onWarning?: (message: string) => void;
  /** input bytes per worker task (default about 1 MB) */
  chunkBytes?: number;
  /** write the output's whole 4096-byte blocks with O_DIRECT, past the page cache (default true; where the file
   * system refuses it, the cast writes through the page cache) */
  directIo?: boolean;
}

export interface CastResult {
  shards: number;
  skippedShards: string[];
  seconds: number;
  bytesIn: number;
  bytesOut: number;
  /** output bytes written with O_DIRECT (0 where the file system refused it or `directIo` was false) */
  directBytes: number;
  warnings: string[];
}

export const stateFileName = '.keel-fp8-cast.json';
const partialName = (shard: string) => `.${shard}.partial`;
const sideFilePatterns = [/^config\.json$/, /\.py$/, /^tokenizer/, /^chat_template/];

interface StateFile {
  version: 1;
  shards: Record<string, { inputBytes: number; inputMtimeMs: number; outputBytes: number }>;
}

async function readState(outputDir: string): Promise<StateFile> {
  try {
    const state = JSON.parse(await readFile(join(outputDir, stateFileName), 'utf8')) as StateFile;
    if (state.version === 1 && typeof state.shards === 'object') return state;
  } catch {
    // no state yet, or unreadable: every shard is cast again
  }
  return { version: 1, shards: {} };
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A shard already done by an earlier run: recorded, the input unchanged, the output of the planned size. */
async function isFinished(state: StateFile, shard: ShardPlan, outputDir: string): Promise<boolean> {
  const record = state.shards[shard.name];
  if (
    !record ||
    record.inputBytes !== shard.inputBytes ||
    record.inputMtimeMs !== shard.inputMtimeMs ||
    record.outputBytes !== shard.layout.fileSize
  )
    return false;
  const size = await lstat(join(outputDir, shard.name)).then(
    (s) => s.size,
    () => -1,
  );
  return size === shard.layout.fileSize;
}

async function readScales(plan: ShardPlan): Promise<Map<string, Float32Array>> {
  const scales = new Map<string, Float32Array>();
  for (const job of plan.jobs) {
    if (job.kind !== 'cast') continue;
    const values = new Float32Array(job.scale.rows * job.scale.columns);
    const where = `${job.scale.file}: cannot read ${job.scale.name} for tensor ${job.tensor}`;
    const handle = await open(job.scale.file, 'r').catch((error: Error) => {
      throw new Error(`${where} (${error.message})`);
    });
    try {
      const { bytesRead } = await handle.read(new Uint8Array(values.buffer), 0, values.byteLength, job.scale.offset);
      if (bytesRead !== values.byteLength) throw new Error(`${where}: the file is cut short`);
    } finally {
      await handle.close();
    }
    scales.set(job.tensor, values);
  }
  return scales;
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('the cast was aborted');
}

/** The input's config, tokenizer, chat template and code files (regular files only). */
async function sideFileNames(inputDir: string): Promise<string[]> {
  return (await readdir(inputDir, { withFileTypes: true }))
    .filter((entry) => entry.isFile() && sideFilePatterns.some((p) => p.test(entry.name)))
    .map((entry) => entry.name);
}

async function copySideFiles(options: CastOptions, names: string[]): Promise<void> {
  for (const name of names) {
    const source = join(options.inputDir, name);
    const target = join(options.outputDir, name);
    if (name === 'config.json' && !options.keepQuantizationConfig && !options.likeSlime) {
      const config = JSON.parse(await readFile(source, 'utf8')) as Record<string, unknown>;
      delete config.quantization_config;
      await writeAtomically(target, JSON.stringify(config, null, 2) + '\n');
    } else {
      await copyAtomically(source, target);
    }
  }
}

/** Re-read every output shard: the header must be the planned one and every tensor must match the input's cast. */
async function verifyOutput(plan: CastPlan, outputDir: string, pool: WorkerPool, chunkBytes?: number): Promise<void> {
  for (const shard of plan.shards) {
    const file = join(outputDir, shard.name);
    const header = await readHeader(file);
    const handle = await open(file, 'r');
    try {
      const bytes = Buffer.alloc(shard.layout.dataStart);
      await handle.read(bytes, 0, bytes.length, 0);
      if (!bytes.equals(shard.layout.headerBytes) || header.fileSize !== shard.layout.fileSize)
        throw new Error(`${file}: the header is not the one the cast of ${shard.inputFile} writes`);
    } finally {
      await handle.close();
    }
    const scales = await readScales(shard);
    await Promise.all(shardTasks(shard, file, scales, true, chunkBytes).map((task) => pool.run(task)));
  }
}

export async function castFp8Checkpoint(options: CastOptions): Promise<CastResult> {
  const started = performance.now();
  const { inputDir, outputDir, signal } = options;
  const plan = await planCast(inputDir, { allowMissingScale: options.allowMissingScale, likeSlime: options.likeSlime });
  for (const warning of plan.warnings) options.onWarning?.(warning);
  if ((await stat(outputDir).catch(() => undefined))?.ino === (await stat(inputDir)).ino)
    throw new Error(`the output directory is the input directory (${inputDir})`);
  await mkdir(outputDir, { recursive: true });
  // Every name the cast writes, checked before anything is written: a regular file or nothing.
  const sideFiles = await sideFileNames(inputDir);
  const written = [indexFileName, stateFileName, ...sideFiles, ...plan.shards.map((s) => s.name)];
  await refuseNonRegularTargets(outputDir, [
    ...written,
    ...written.map((name) => `${name}.tmp`),
    ...plan.shards.map((s) => partialName(s.name)),
  ]);
  // Not complete until the index is written again, last.
  await rm(join(outputDir, indexFileName), { force: true });
  for (const name of await readdir(outputDir))
    if (name.startsWith('.') && name.endsWith('.partial')) await rm(join(outputDir, name), { force: true });

  const state = await readState(outputDir);
  const skippedShards: string[] = [];
  const todo: ShardPlan[] = [];
  for (const shard of plan.shards) {
    if (await isFinished(state, shard, outputDir)) skippedShards.push(shard.name);
    else todo.push(shard);
  }
  const bytesTotal = plan.shards.reduce((sum, s) => sum + s.inputBytes, 0);
  const progress: CastProgress = {
    shardsDone: [...skippedShards],
    shardsTotal: plan.shards.length,
    bytesDone: plan.shards.filter((s) => skippedShards.includes(s.name)).reduce((sum, s) => sum + s.inputBytes, 0),
    bytesTotal,
  };
  options.onProgress?.({ ...progress, shardsDone: [...progress.shardsDone] });
  // Bytes are reported at most every 200 ms (a task is about 1 MB); finished shards always.
  let reportedAt = 0;
  const reportBytes = () => {
    const now = performance.now();
    if (now - reportedAt < 200) return;
    reportedAt = now;
    options.onProgress?.({ ...progress, shardsDone: [...progress.shardsDone] });
  };

  const threads = Math.max(1, options.threads ?? availableParallelism());
  const pool = new WorkerPool(threads);
  const onAbort = () => void pool.close(abortError(signal!));
  signal?.addEventListener('abort', onAbort, { once: true });
  const partials = new Set<string>();
  let directBytes = 0;
  let stateWrites = Promise.resolve();
  try {
    if (signal?.aborted) throw abortError(signal);
    const castShard = async (shard: ShardPlan) => {
      const partial = join(outputDir, partialName(shard.name));
      partials.add(partial);
      // The header only: the tasks' writes extend the file up to its last byte, the end of its last tensor. Setting
      // the full size first (a sparse file) measured 1.5-2x the kernel time per byte written on ext4.
      const handle = await createExclusive(partial);
      try {
        await handle.write(shard.layout.headerBytes, 0, shard.layout.headerBytes.length, 0);
      } finally {
        await handle.close();
      }
      const scales = await readScales(shard);
      let counted = 0;
      const direct = options.directIo ?? true;
      await Promise.all(
        shardTasks(shard, partial, scales, false, options.chunkBytes, direct).map(async (task: Task) => {
          const result = await pool.run(task);
          directBytes += result.directBytes;
          const bytes = task.kind === 'cast' ? task.rows * task.columns : task.bytes;
          counted += bytes;
          progress.bytesDone += bytes;
          reportBytes();
        }),
      );
      progress.bytesDone += shard.inputBytes - counted;
      const synced = await open(partial, 'r+');
      try {
        await synced.sync();
      } finally {
        await synced.close();
      }
      await rename(partial, join(outputDir, shard.name));
      partials.delete(partial);
      state.shards[shard.name] = {
        inputBytes: shard.inputBytes,
        inputMtimeMs: shard.inputMtimeMs,
        outputBytes: shard.layout.fileSize,
      };
      stateWrites = stateWrites.then(async () => {
        await syncDirectory(outputDir);
        await writeAtomically(join(outputDir, stateFileName), JSON.stringify(state, null, 1) + '\n');
      });
      await stateWrites;
      progress.shardsDone.push(shard.name);
      options.onProgress?.({ ...progress, shardsDone: [...progress.shardsDone] });
    };
    // A few shards in flight keep every thread busy across shard boundaries without opening all of them at once.
    const queue = [...todo];
    const lanes = Array.from({ length: Math.min(queue.length, threads + 1) }, async () => {
      for (let shard = queue.shift(); shard; shard = queue.shift()) {
        try {
          await castShard(shard);
        } catch (error) {
          // The first failure stops the other shards: their running and queued tasks reject.
          void pool.close(error as Error);
          throw error;
        }
      }
    });
    const results = await Promise.allSettled(lanes);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    if (signal?.aborted) throw abortError(signal);
    await copySideFiles(options, sideFiles);
    await writeAtomically(
      join(outputDir, indexFileName),
      JSON.stringify({ metadata: {}, weight_map: plan.weightMap }, null, 2) + (options.likeSlime ? '' : '\n'),
    );
    await syncDirectory(outputDir);
    if (options.verify) await verifyOutput(plan, outputDir, pool, options.chunkBytes);
  } catch (error) {
    await pool.close();
    await Promise.all([...partials].map((file) => rm(file, { force: true })));
    throw error;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  await pool.close();
  const bytesOut = plan.shards.reduce((sum, s) => sum + s.layout.fileSize, 0);
  return {
    shards: plan.shards.length,
    skippedShards,
    seconds: (performance.now() - started) / 1000,
    bytesIn: bytesTotal,
    bytesOut,
    directBytes,
    warnings: plan.warnings,
  };
}
