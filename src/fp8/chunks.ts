// A shard's jobs cut into worker tasks of bounded size: rows of an FP8 weight (whole 128-row blocks, or a power-of-two
// part of one block row when a block row is larger than a chunk, so a task never straddles a block row partly), or
// byte ranges of a copied tensor. Memory per worker stays near `chunkBytes` of input (twice that of output). Chunks
// of about 1 MB measured several times less kernel time per byte written than 8 MB ones (page cache copies from a
// buffer still in the CPU cache).
import { block, type ShardPlan } from './plan.js';
import type { Task } from './tasks.js';

export const defaultChunkBytes = 1024 * 1024;

/** Rows per task: whole block rows if one fits in a chunk, else the largest power of two (a divisor of 128) that does. */
export function rowsPerTask(columns: number, chunkBytes: number): number {
  if (columns * block <= chunkBytes) return Math.floor(chunkBytes / (columns * block)) * block;
  let rows = block;
  while (rows > 1 && rows * columns > chunkBytes) rows /= 2;
  return rows;
}

export function shardTasks(
  shard: ShardPlan,
  outputFile: string,
  scales: Map<string, Float32Array>,
  verify: boolean,
  chunkBytes = defaultChunkBytes,
  direct = false,
): Task[] {
  const tasks: Task[] = [];
  const common = { inputFile: shard.inputFile, outputFile, verify, direct };
  for (const job of shard.jobs) {
    if (job.kind === 'copy') {
      for (let at = 0; at < job.bytes; at += chunkBytes)
        tasks.push({
          ...common,
          kind: 'copy',
          tensor: job.tensor,
          bytes: Math.min(chunkBytes, job.bytes - at),
          inputOffset: job.inputOffset + at,
          outputOffset: job.outputOffset + at,
        });
      continue;
    }
    // A tensor with a zero dimension has no element to cast: its entry is in the header, no byte in the data.
    if (job.rows === 0 || job.columns === 0) continue;
    const tensorScales = scales.get(job.tensor)!;
    const step = rowsPerTask(job.columns, chunkBytes);
    for (let firstRow = 0; firstRow < job.rows; firstRow += step) {
      const rows = Math.min(step, job.rows - firstRow);
      const firstBlockRow = Math.floor(firstRow / block);
      const blockRows = Math.ceil(((firstRow % block) + rows) / block);
      tasks.push({
        ...common,
        kind: 'cast',
        tensor: job.tensor,
        firstRow,
        rows,
        columns: job.columns,
        inputOffset: job.inputOffset + firstRow * job.columns,
        outputOffset: job.outputOffset + firstRow * job.columns * 2,
        scales: tensorScales.slice(firstBlockRow * job.scale.columns, (firstBlockRow + blockRows) * job.scale.columns),
        scaleColumns: job.scale.columns,
      });
    }
  }
  return tasks;
}
