// The safetensors framing (the safetensors format): 8-byte little-endian header length N (N <= 100,000,000),
// N bytes of JSON, then the data. Reading validates what the reference library validates -- offsets contiguous from 0,
// each tensor's byte length equal to numel x element size, and the file exactly as long as the header says -- and
// every error names the file (and the tensor). Writing follows the reference writer: tensors sorted by dtype
// (descending) then name, packed from 0, the header padded with spaces to a multiple of 8.
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';

export const maxHeaderLength = 100_000_000;

/** Element sizes of the dtypes safetensors knows, in the reference library's dtype order (used for sorting). */
const dtypeOrder: [string, number][] = [
  ['BOOL', 1],
  ['U8', 1],
  ['I8', 1],
  ['F8_E5M2', 1],
  ['F8_E4M3', 1],
  ['F8_E8M0', 1],
  ['I16', 2],
  ['U16', 2],
  ['F16', 2],
  ['BF16', 2],
  ['I32', 4],
  ['U32', 4],
  ['F32', 4],
  ['F64', 8],
  ['I64', 8],
  ['U64', 8],
];
const dtypeSize = new Map(dtypeOrder);
const dtypeRank = new Map(dtypeOrder.map(([name], i) => [name, i]));

export interface TensorEntry {
  name: string;
  dtype: string;
  shape: number[];
  /** absolute byte offsets in the file (data start already added) */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  file: string;
  fileSize: number;
  headerLength: number;
  dataStart: number;
  metadata: Record<string, string> | undefined;
  tensors: Map<string, TensorEntry>;
}

export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

export function elementSize(dtype: string): number | undefined {
  return dtypeSize.get(dtype);
}

export const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** Parse and validate the header bytes of `file` (of `fileSize` bytes). */
export function parseHeader(file: string, fileSize: number, headerLength: number, json: Buffer): SafetensorsHeader {
  let raw: unknown;
  try {
    raw = JSON.parse(json.toString('utf8'));
  } catch (error) {
    throw new SafetensorsError(`${file}: the header is not valid JSON (${(error as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new SafetensorsError(`${file}: the header is not a JSON object`);
  const dataStart = 8 + headerLength;
  let metadata: Record<string, string> | undefined;
  const tensors: TensorEntry[] = [];
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null || Object.values(value).some((v) => typeof v !== 'string'))
        throw new SafetensorsError(`${file}: __metadata__ must map strings to strings`);
      metadata = value as Record<string, string>;
      continue;
    }
    const entry = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const size = typeof entry.dtype === 'string' ? elementSize(entry.dtype) : undefined;
    if (size === undefined)
      throw new SafetensorsError(`${file}: tensor ${name} has an unknown dtype ${String(entry.dtype)}`);
    const shape = entry.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw new SafetensorsError(`${file}: tensor ${name} has an invalid shape ${JSON.stringify(shape)}`);
    const offsets = entry.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0))
      throw new SafetensorsError(`${file}: tensor ${name} has invalid data_offsets ${JSON.stringify(offsets)}`);
    const [begin, end] = offsets as [number, number];
    const bytes = numel(shape as number[]) * size;
    if (end - begin !== bytes)
      throw new SafetensorsError(
        `${file}: tensor ${name} (${entry.dtype} ${JSON.stringify(shape)}) needs ${bytes} bytes, its offsets span ${end - begin}`,
      );
    tensors.push({
      name,
      dtype: entry.dtype as string,
      shape: shape as number[],
      begin: dataStart + begin,
      end: dataStart + end,
    });
  }
  tensors.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expected = dataStart;
  for (const t of tensors) {
    if (t.begin !== expected)
      throw new SafetensorsError(
        `${file}: tensor ${t.name} starts at data offset ${t.begin - dataStart}, expected ${expected - dataStart} (offsets must be contiguous)`,
      );
    expected = t.end;
  }
  if (expected !== fileSize)
    throw new SafetensorsError(
      expected > fileSize
        ? `${file} is truncated: the header describes ${expected} bytes, the file has ${fileSize}` +
            (tensors.length ? ` (tensor ${tensors.find((t) => t.end > fileSize)?.name} is cut)` : '')
        : `${file}: the header describes ${expected} bytes, the file has ${fileSize} (trailing data)`,
    );
  return { file, fileSize, headerLength, dataStart, metadata, tensors: new Map(tensors.map((t) => [t.name, t])) };
}

/** Read and validate the header of one safetensors file. */
/**
 * Open a shard to read: a regular file only (a symlink to one is followed). Opened without blocking, so a FIFO or a
 * device is refused instead of waited on; a directory is refused by name instead of a bare EISDIR.
 */
export async function openRegularFile(file: string): Promise<{ handle: FileHandle; size: number; mtimeMs: number }> {
  let handle: FileHandle;
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    throw new SafetensorsError(
      `${file}: cannot open (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
    );
  }
  const info = await handle.stat();
  if (!info.isFile()) {
    await handle.close();
    const kind = info.isDirectory() ? 'a directory' : info.isFIFO() ? 'a FIFO' : 'not a regular file';
    throw new SafetensorsError(`${file} is ${kind}: a shard must be a regular file`);
  }
  return { handle, size: info.size, mtimeMs: info.mtimeMs };
}

export async function readHeader(file: string): Promise<SafetensorsHeader> {
  const { handle, size: fileSize } = await openRegularFile(file);
  try {
    if (fileSize < 8) throw new SafetensorsError(`${file} is truncated: ${fileSize} bytes, not even a header length`);
    const lengthBytes = Buffer.alloc(8);
    await handle.read(lengthBytes, 0, 8, 0);
    const headerLength = lengthBytes.readBigUInt64LE(0);
    if (headerLength > BigInt(maxHeaderLength))
      throw new SafetensorsError(`${file}: header length ${headerLength} is over the limit of ${maxHeaderLength}`);
    if (8n + headerLength > BigInt(fileSize))
      throw new SafetensorsError(
        `${file} is truncated: header length ${headerLength} but the file has ${fileSize} bytes`,
      );
    const json = Buffer.alloc(Number(headerLength));
    await handle.read(json, 0, json.length, 8);
    return parseHeader(file, fileSize, Number(headerLength), json);
  } finally {
    await handle.close();
  }
}

export interface OutputTensor {
  name: string;
  dtype: string;
  shape: number[];
}

export interface OutputLayout {
  /** the 8 length bytes and the padded JSON header */
  headerBytes: Buffer;
  dataStart: number;
  fileSize: number;
  /** absolute offsets, in file order */
  tensors: (OutputTensor & { begin: number; end: number })[];
}

/** Lay out a safetensors file as the reference writer does. */
/** The header and offsets of a file as safetensors writes it; without metadata there is no `__metadata__` entry. */
export function layoutFile(tensors: OutputTensor[], metadata: Record<string, string> | undefined): OutputLayout {
  const sorted = [...tensors].sort(
    (a, b) => dtypeRank.get(b.dtype)! - dtypeRank.get(a.dtype)! || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
  // No prototype: a tensor may be named `__proto__` (or `constructor`) and must still be written.
  const header: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  if (metadata !== undefined) header.__metadata__ = metadata;
  let offset = 0;
  const placed = sorted.map((t) => {
    const bytes = numel(t.shape) * elementSize(t.dtype)!;
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    const relative = { begin: offset, end: offset + bytes };
    offset += bytes;
    return { ...t, ...relative };
  });
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const jsonBytes = Buffer.from(json, 'utf8');
  const headerBytes = Buffer.alloc(8 + jsonBytes.length);
  headerBytes.writeBigUInt64LE(BigInt(jsonBytes.length));
  jsonBytes.copy(headerBytes, 8);
  const dataStart = headerBytes.length;
  return {
    headerBytes,
    dataStart,
    fileSize: dataStart + offset,
    tensors: placed.map((t) => ({ ...t, begin: dataStart + t.begin, end: dataStart + t.end })),
  };
}
