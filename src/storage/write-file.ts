// The one way keel writes a file on shared storage or the worker host: a new file created exclusively (O_EXCL, so
// never through a symlink planted under the temporary name) in the target's own directory, written and flushed, then
// renamed over the target. rename(2) replaces a symlink at the target itself, never the file it points to.
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import path from 'node:path';
import { rename } from 'node:fs/promises';

export interface WriteFileOptions {
  /** file mode of the new file (default 0o644) */
  mode?: number;
}

/** Write `content` to `file` atomically; a symlink at `file` is replaced, not followed. */
export async function writeFileSafely(
  file: string,
  content: string | Uint8Array,
  options: WriteFileOptions = {},
): Promise<void> {
  const dir = path.dirname(file);
  const temporary = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.keel-tmp`);
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
  const handle = await open(temporary, flags, options.mode ?? 0o644).catch((error: NodeJS.ErrnoException) => {
    throw new StorageError(file, `cannot create ${temporary}: ${error.code ?? error.message}`);
  });
  try {
    await handle.writeFile(content);
    await handle.sync();
  } catch (error) {
    await handle.close().catch(() => undefined);
    await rm(temporary, { force: true });
    throw error;
  }
  await handle.close();
  try {
    await rename(temporary, file);
  } catch (error) {
    await rm(temporary, { force: true });
    throw new StorageError(file, `cannot replace it: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
}

/** A file on shared storage that keel would not read, write or delete as asked: the message names the path. */
export class StorageError extends Error {
  constructor(
    readonly path: string,
    reason: string,
  ) {
    super(`${path}: ${reason}`);
    this.name = 'StorageError';
  }
}
