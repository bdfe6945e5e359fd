// The one way keel reads a small file that someone else may write (shared storage, a model directory): a regular file
// only, opened without blocking (a FIFO planted under the name is refused, never waited on), and at most `maxBytes`.
import { constants, type Stats } from 'node:fs';
import { open } from 'node:fs/promises';
import { StorageError } from './write-file.js';

export interface ReadFileOptions {
  /** refuse a larger file (default 16 MiB) */
  maxBytes?: number;
}

const defaultMaxBytes = 16 * 1024 * 1024;

/** The file's text; undefined when it does not exist. Throws a StorageError naming the path for anything but a regular file. */
export async function readFileBounded(file: string, options: ReadFileOptions = {}): Promise<string | undefined> {
  const maxBytes = options.maxBytes ?? defaultMaxBytes;
  let handle;
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    // ENXIO: a FIFO with no writer would only be opened for writing; still not a file to read.
    throw new StorageError(file, `cannot be read (${code ?? String(error)})`);
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new StorageError(file, `is not a regular file (${kindOf(stat)}); remove or replace it`);
    if (stat.size > maxBytes)
      throw new StorageError(file, `is ${stat.size} bytes, more than the ${maxBytes} keel reads from such a file`);
    const buffer = Buffer.alloc(Math.min(stat.size, maxBytes) + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > maxBytes)
        throw new StorageError(file, `grew past the ${maxBytes} bytes keel reads from such a file`);
      if (length === buffer.length) break;
    }
    return buffer.subarray(0, length).toString('utf8');
  } finally {
    await handle.close();
  }
}

function kindOf(stat: Stats): string {
  if (stat.isFIFO()) return 'a FIFO';
  if (stat.isDirectory()) return 'a directory';
  if (stat.isSocket()) return 'a socket';
  if (stat.isCharacterDevice() || stat.isBlockDevice()) return 'a device';
  return 'not a file';
}
