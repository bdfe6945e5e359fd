// A shard's jobs cut into worker tasks of bounded size: whole 128-row blocks of an FP8 weight (at least one block row),
// or byte ranges of a copied tensor. Memory per worker stays near `chunkBytes` of input (twice that of output).
import { block, type ShardPlan } from './plan.js';
import type { Task } from './tasks.js';

export const defaultChunkBytes = 8 * 1024 * 1024;

export function shardTasks(
  shard: ShardPlan,
  outputFile: string,
  scales: Map<string, Float32Array>,
  verify: boolean,
  chunkBytes = defaultChunkBytes,
): Task[] {
  const tasks: Task[] = [];
  const common = { inputFile: shard.inputFile, outputFile, verify };
  for (const job of shard.jobs) {
    if (job.kind === 'copy') {
      for (let at = 0; at < job.bytes || (at === 0 && job.bytes === 0); at += chunkBytes) {
        const bytes = Math.min(chunkBytes, job.bytes - at);
        if (bytes > 0)
          tasks.push({
            ...common,
            kind: 'copy',
            tensor: job.tensor,
            bytes,
            inputOffset: job.inputOffset + at,
            outputOffset: job.outputOffset + at,
          });
        if (job.bytes === 0) break;
      }
      continue;
    }
    const tensorScales = scales.get(job.tensor)!;
    const rowsPerTask = Math.max(1, Math.floor(chunkBytes / Math.max(1, job.columns * block))) * block;
    for (let firstRow = 0; firstRow < job.rows; firstRow += rowsPerTask) {
      const rows = Math.min(rowsPerTask, job.rows - firstRow);
      const firstBlockRow = firstRow / block;
      const blockRows = Math.ceil(rows / block);
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
