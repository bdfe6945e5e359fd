// Writing into the cast's output directory without trusting what is already there: a name keel writes is a regular
// file or nothing. A symlink (which a write would follow out of the directory), a directory, a FIFO or a device under
// one of those names stops the cast before anything is written, naming the file; new files are created exclusively
// (O_EXCL does not follow a symlink planted after the check) and renamed over their final names.
import { lstat, open, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';

export class UnsafeOutputError extends Error {
  override name = 'UnsafeOutputError';
}

/** Refuses when `file` exists as anything but a regular file (lstat: a symlink is refused, not followed). */
export async function refuseNonRegular(file: string): Promise<void> {
  const info = await lstat(file).catch(() => undefined);
  if (!info || info.isFile()) return;
  const kind = info.isSymbolicLink() ? 'a symlink' : info.isDirectory() ? 'a directory' : 'not a regular file';
  throw new UnsafeOutputError(
    `${file} is ${kind}: the cast writes a regular file under this name and never writes through or replaces ` +
      'anything else -- move it out of the output directory',
  );
}

/** Refuses when any of `names` exists in `dir` as anything but a regular file. */
export async function refuseNonRegularTargets(dir: string, names: Iterable<string>): Promise<void> {
  for (const name of names) await refuseNonRegular(join(dir, name));
}

/** Create `file` for writing; it must not exist (a leftover of ours is removed first, a symlink itself, not its target). */
export async function createExclusive(file: string) {
  await rm(file, { force: true });
  return open(file, 'wx', 0o644);
}

/** Write a file durably under its final name: a new temporary file, fsync, rename. */
export async function writeAtomically(file: string, data: string | Buffer): Promise<void> {
  await refuseNonRegular(file);
  const temporary = `${file}.tmp`;
  const handle = await createExclusive(temporary);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporary, file);
}

/** A side file (config, tokenizer, code) copied by content, never by writing through what `target` points at. */
export async function copyAtomically(source: string, target: string): Promise<void> {
  await writeAtomically(target, await readFile(source));
}
