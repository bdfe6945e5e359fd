// Is an FP8 -> BF16 cast complete (docs/slime.md, "FP8 -> BF16 cast")? The index is written last: it must exist,
// name no `_scale_inv` tensor, and every shard of the input must be present with a header whose sizes add up and
// whose tensors are exactly the ones the output index places there. Shard names from either index go through the
// same name check as every other file name from outside: a name that leaves the directory is refused, never opened.
import { join } from 'node:path';
import { z } from 'zod';
import { describeName, relativePathProblem } from '../spec/names.js';
import { readFileBounded } from '../storage/index.js';
import { openRegularFile } from './safetensors.js';

export const indexFileName = 'model.safetensors.index.json';
/** DeepSeek-V3's index is ~9 MB: a larger one is refused rather than read into memory. */
export const indexMaxBytes = 64 * 1024 * 1024;

const indexSchema = z.object({ weight_map: z.record(z.string(), z.string()) });

/** The weight map of an index file (tensor -> shard, without a prototype), or the reason it is unusable. */
async function readWeightMap(file: string): Promise<{ map?: Map<string, string>; problem?: string }> {
  let text: string | undefined;
  try {
    text = await readFileBounded(file, { maxBytes: indexMaxBytes });
  } catch (error) {
    return { problem: (error as Error).message };
  }
  if (text === undefined) return { problem: `${file} is missing (it is written last)` };
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { problem: `${file} is missing or incomplete (not valid JSON) (it is written last)` };
  }
  // zod's record drops a `__proto__` key: read the entries of the parsed JSON itself once the shape is known.
  if (!indexSchema.safeParse(raw).success) return { problem: `${file} has no weight_map of tensor -> shard file` };
  const map = new Map(Object.entries((raw as { weight_map: Record<string, string> }).weight_map));
  for (const shard of new Set(map.values())) {
    const problem = relativePathProblem(shard, { singleSegment: true });
    if (problem) return { problem: `${file} names a shard ${describeName(shard)} that ${problem}: refused` };
  }
  return { map };
}

/** The tensor names of one safetensors file's header, or its framing problems (length, JSON, offsets vs size). */
export async function safetensorsFraming(file: string): Promise<{ tensors?: string[]; problems: string[] }> {
  let opened;
  try {
    opened = await openRegularFile(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return {
      problems: [
        /ENOENT/.test((error as Error).message) || code === 'ENOENT' ? `${file} is missing` : (error as Error).message,
      ],
    };
  }
  const { handle, size } = opened;
  try {
    if (size < 8) return { problems: [`${file} is truncated (${size} bytes)`] };
    const lengthBytes = Buffer.alloc(8);
    await handle.read(lengthBytes, 0, 8, 0);
    const headerLength = Number(lengthBytes.readBigUInt64LE(0));
    if (headerLength > 100_000_000 || 8 + headerLength > size)
      return { problems: [`${file}: header length ${headerLength} does not fit the file`] };
    const header = Buffer.alloc(headerLength);
    await handle.read(header, 0, headerLength, 8);
    const parsed: unknown = JSON.parse(header.toString('utf8'));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      return { problems: [`${file}: the header is not a JSON object`] };
    const entries = Object.entries(parsed).filter(([k]) => k !== '__metadata__');
    const end = Math.max(
      0,
      ...entries.map(([, v]) => {
        const offsets = (v as { data_offsets?: unknown } | null)?.data_offsets;
        return Array.isArray(offsets) && typeof offsets[1] === 'number' ? offsets[1] : 0;
      }),
    );
    return 8 + headerLength + end === size
      ? { tensors: entries.map(([k]) => k), problems: [] }
      : { problems: [`${file}: header says ${8 + headerLength + end} bytes, the file has ${size}`] };
  } catch (error) {
    return { problems: [`${file}: unreadable header (${(error as Error).message})`] };
  } finally {
    await handle.close();
  }
}

/** Problems of one safetensors file's framing: 8-byte header length, JSON header, offsets that cover the file. */
export async function safetensorsFramingProblems(file: string): Promise<string[]> {
  return (await safetensorsFraming(file)).problems;
}

export async function checkFp8CastComplete(
  inputDir: string,
  outputDir: string,
): Promise<{ complete: boolean; reason?: string }> {
  const output = await readWeightMap(join(outputDir, indexFileName));
  if (!output.map) return { complete: false, reason: output.problem };
  const scales = [...output.map.keys()].filter((k) => k.endsWith('_scale_inv'));
  if (scales.length)
    return { complete: false, reason: `the output index still names ${scales.length} _scale_inv tensor(s)` };
  const input = await readWeightMap(join(inputDir, indexFileName));
  if (input.problem && !/is missing \(/.test(input.problem)) return { complete: false, reason: input.problem };
  const inputShards = [...new Set((input.map ?? output.map).values())];
  const problems: string[] = [];
  for (const shard of inputShards) {
    const file = join(outputDir, shard);
    const framing = await safetensorsFraming(file);
    problems.push(...framing.problems);
    for (const tensor of framing.tensors ?? [])
      if (output.map.get(tensor) !== shard)
        problems.push(`${file} holds tensor ${describeName(tensor)}, which the output index does not place there`);
  }
  for (const [tensor, shard] of output.map)
    if (!inputShards.includes(shard))
      problems.push(`the output index places ${describeName(tensor)} in ${describeName(shard)}, a shard of no input`);
  return problems.length ? { complete: false, reason: problems.slice(0, 5).join('; ') } : { complete: true };
}
