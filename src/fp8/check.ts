// Is an FP8 -> BF16 cast complete (SLIME-CONTRACT.md "FP8 -> BF16 cast")? The index is written last: it must exist,
// name no `_scale_inv` tensor, and every shard of the input must be present with a header whose sizes add up.
import { open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';

export const indexFileName = 'model.safetensors.index.json';

interface IndexFile {
  weight_map: Record<string, string>;
}

/** Problems of one safetensors file's framing: 8-byte header length, JSON header, offsets that cover the file. */
export async function safetensorsFramingProblems(file: string): Promise<string[]> {
  let size: number;
  try {
    size = (await stat(file)).size;
  } catch {
    return [`${file} is missing`];
  }
  if (size < 8) return [`${file} is truncated (${size} bytes)`];
  const handle = await open(file, 'r');
  try {
    const lengthBytes = Buffer.alloc(8);
    await handle.read(lengthBytes, 0, 8, 0);
    const headerLength = Number(lengthBytes.readBigUInt64LE(0));
    if (headerLength > 100_000_000 || 8 + headerLength > size)
      return [`${file}: header length ${headerLength} does not fit the file`];
    const header = Buffer.alloc(headerLength);
    await handle.read(header, 0, headerLength, 8);
    const entries = JSON.parse(header.toString('utf8')) as Record<string, { data_offsets?: [number, number] }>;
    const end = Math.max(
      0,
      ...Object.entries(entries)
        .filter(([k]) => k !== '__metadata__')
        .map(([, v]) => v.data_offsets?.[1] ?? 0),
    );
    return 8 + headerLength + end === size
      ? []
      : [`${file}: header says ${8 + headerLength + end} bytes, the file has ${size}`];
  } catch (error) {
    return [`${file}: unreadable header (${(error as Error).message})`];
  } finally {
    await handle.close();
  }
}

export async function checkFp8CastComplete(
  inputDir: string,
  outputDir: string,
): Promise<{ complete: boolean; reason?: string }> {
  let output: IndexFile;
  try {
    output = JSON.parse(await readFile(join(outputDir, indexFileName), 'utf8')) as IndexFile;
  } catch {
    return { complete: false, reason: `${join(outputDir, indexFileName)} is missing (it is written last)` };
  }
  const scales = Object.keys(output.weight_map).filter((k) => k.endsWith('_scale_inv'));
  if (scales.length)
    return { complete: false, reason: `the output index still names ${scales.length} _scale_inv tensor(s)` };
  let inputShards: string[];
  try {
    const input = JSON.parse(await readFile(join(inputDir, indexFileName), 'utf8')) as IndexFile;
    inputShards = [...new Set(Object.values(input.weight_map))];
  } catch {
    inputShards = [...new Set(Object.values(output.weight_map))];
  }
  const problems: string[] = [];
  for (const shard of inputShards) problems.push(...(await safetensorsFramingProblems(join(outputDir, shard))));
  return problems.length ? { complete: false, reason: problems.slice(0, 5).join('; ') } : { complete: true };
}
