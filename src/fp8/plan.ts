// What a cast will do, decided from the input's index and shard headers before any output is touched: per shard, the
// output layout and one job per tensor (cast or copy). Every inconsistency -- a truncated shard, a header that lies, a
// missing or misshapen scale -- is an error here, naming the file and the tensor.
import { join } from 'node:path';
import { describeName, relativePathProblem } from '../spec/names.js';
import { readFileBounded } from '../storage/index.js';
import { indexFileName, indexMaxBytes } from './check.js';
import {
  layoutFile,
  openRegularFile,
  readHeader,
  SafetensorsError,
  type OutputLayout,
  type SafetensorsHeader,
} from './safetensors.js';

export const scaleSuffix = '_scale_inv';
export const block = 128;

export interface CastJob {
  kind: 'cast';
  tensor: string;
  rows: number;
  columns: number;
  inputOffset: number;
  outputOffset: number;
  scale: { file: string; name: string; offset: number; rows: number; columns: number };
}

export interface CopyJob {
  kind: 'copy';
  tensor: string;
  bytes: number;
  inputOffset: number;
  outputOffset: number;
}

export interface ShardPlan {
  name: string;
  inputFile: string;
  inputBytes: number;
  inputMtimeMs: number;
  layout: OutputLayout;
  jobs: (CastJob | CopyJob)[];
}

export interface CastPlan {
  inputDir: string;
  shards: ShardPlan[];
  /** output weight_map: tensor -> shard, without scales */
  weightMap: Record<string, string>;
  warnings: string[];
}

export class CastInputError extends Error {
  override name = 'CastInputError';
}

async function readIndex(inputDir: string): Promise<Record<string, string>> {
  const file = join(inputDir, indexFileName);
  let text: string | undefined;
  try {
    text = await readFileBounded(file, { maxBytes: indexMaxBytes });
  } catch (error) {
    throw new CastInputError((error as Error).message);
  }
  if (text === undefined)
    throw new CastInputError(`${file} is missing: the cast reads the shard list and scale locations from it`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new CastInputError(`${file} is not valid JSON (${(error as Error).message})`);
  }
  const map = (parsed as { weight_map?: unknown }).weight_map;
  if (typeof map !== 'object' || map === null || Object.values(map).some((v) => typeof v !== 'string'))
    throw new CastInputError(`${file} has no weight_map of tensor -> shard file`);
  for (const shard of Object.values(map as Record<string, string>)) {
    const problem = relativePathProblem(shard, { singleSegment: true }) ?? (shard.startsWith('.') ? 'is hidden' : '');
    if (problem) throw new CastInputError(`${file} names a shard ${describeName(shard)} that ${problem}: refused`);
  }
  return map as Record<string, string>;
}

export interface PlanOptions {
  allowMissingScale?: boolean;
  /**
   * The layout slime's tools/fp8_cast_bf16.py writes: shards without `{"format": "pt"}` metadata, and the index in
   * the input's order with the scales of the cast weights removed (other entries kept as they are).
   */
  likeSlime?: boolean;
}

export async function planCast(inputDir: string, options: PlanOptions = {}): Promise<CastPlan> {
  const weightMap = await readIndex(inputDir);
  const shardNames = [...new Set(Object.values(weightMap))].sort();
  const headers = new Map<string, SafetensorsHeader>();
  const mtimes = new Map<string, number>();
  try {
    for (const shard of shardNames) {
      const file = join(inputDir, shard);
      const { handle, mtimeMs } = await openRegularFile(file);
      await handle.close();
      headers.set(shard, await readHeader(file));
      mtimes.set(shard, mtimeMs);
    }
  } catch (error) {
    if (error instanceof SafetensorsError) throw new CastInputError(error.message);
    throw error;
  }
  for (const [tensor, shard] of Object.entries(weightMap))
    if (!headers.get(shard)!.tensors.has(tensor))
      throw new CastInputError(
        `${join(inputDir, shard)}: the index places tensor ${tensor} here, the shard does not hold it`,
      );

  const warnings: string[] = [];
  // Keyed by tensor names from the files: no prototype, so `__proto__` is a tensor like any other.
  const outputMap: Record<string, string> = Object.create(null) as Record<string, string>;
  const castScales = new Set<string>();
  const shards = shardNames.map((shard): ShardPlan => {
    const header = headers.get(shard)!;
    const planned: {
      name: string;
      dtype: string;
      shape: number[];
      job: (outputOffset: number) => CastJob | CopyJob;
    }[] = [];
    for (const t of header.tensors.values()) {
      if (t.name.endsWith(scaleSuffix)) continue;
      outputMap[t.name] = shard;
      const copy = (outputOffset: number): CopyJob => ({
        kind: 'copy',
        tensor: t.name,
        bytes: t.end - t.begin,
        inputOffset: t.begin,
        outputOffset,
      });
      if (t.dtype !== 'F8_E4M3') {
        planned.push({ name: t.name, dtype: t.dtype, shape: t.shape, job: copy });
        continue;
      }
      const where = `${header.file}: tensor ${t.name}`;
      const scaleName = t.name + scaleSuffix;
      const scaleShard = Object.hasOwn(weightMap, scaleName)
        ? weightMap[scaleName]
        : header.tensors.has(scaleName)
          ? shard
          : undefined;
      if (scaleShard === undefined) {
        if (!options.allowMissingScale)
          throw new CastInputError(`${where} is F8_E4M3 but ${scaleName} is in no shard (the index does not name it)`);
        warnings.push(`${where}: no ${scaleName}, copied as FP8 unchanged`);
        planned.push({ name: t.name, dtype: t.dtype, shape: t.shape, job: copy });
        continue;
      }
      if (t.shape.length !== 2)
        throw new CastInputError(
          `${where} is F8_E4M3 with shape ${JSON.stringify(t.shape)}: only 2-D weights are cast`,
        );
      const [rows, columns] = t.shape as [number, number];
      const scale = headers.get(scaleShard)?.tensors.get(scaleName);
      const scaleFile = join(inputDir, scaleShard);
      if (!scale) throw new CastInputError(`${scaleFile}: scale ${scaleName} of ${t.name} is not in this shard`);
      const want = [Math.ceil(rows / block), Math.ceil(columns / block)];
      if (scale.dtype !== 'F32' || scale.shape.length !== 2 || scale.shape[0] !== want[0] || scale.shape[1] !== want[1])
        throw new CastInputError(
          `${scaleFile}: scale ${scaleName} is ${scale.dtype} ${JSON.stringify(scale.shape)}, ` +
            `expected F32 ${JSON.stringify(want)} for ${t.name} ${JSON.stringify(t.shape)} (128x128 blocks)`,
        );
      castScales.add(scaleName);
      planned.push({
        name: t.name,
        dtype: 'BF16',
        shape: t.shape,
        job: (outputOffset) => ({
          kind: 'cast',
          tensor: t.name,
          rows,
          columns,
          inputOffset: t.begin,
          outputOffset,
          scale: { file: scaleFile, name: scaleName, offset: scale.begin, rows: want[0]!, columns: want[1]! },
        }),
      });
    }
    const layout = layoutFile(planned, options.likeSlime ? undefined : { format: 'pt' });
    const byName = new Map(planned.map((p) => [p.name, p]));
    return {
      name: shard,
      inputFile: header.file,
      inputBytes: header.fileSize,
      inputMtimeMs: mtimes.get(shard)!,
      layout,
      jobs: layout.tensors.map((t) => byName.get(t.name)!.job(t.begin)),
    };
  });
  const outputIndex = options.likeSlime
    ? Object.fromEntries(Object.entries(weightMap).filter(([name]) => !castScales.has(name)))
    : Object.fromEntries(Object.entries(outputMap).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return { inputDir, shards, weightMap: outputIndex, warnings };
}
