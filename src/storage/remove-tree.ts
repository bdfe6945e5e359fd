// The one way keel deletes a directory tree it decided to delete (a checkpoint retention dropped): only an entry of a
// directory keel names, checked to be a real directory there (a symlink is unlinked, never followed), and removed by
// GNU rm, which walks relative to open directory handles (no path is re-resolved, so a directory swapped for a symlink
// mid-walk is removed as a link) and stays on the tree's file system (--one-file-system).
import { spawn } from 'node:child_process';
import { lstat, realpath, unlink } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { StorageError } from './write-file.js';

export interface RemoveTreeOptions {
  signal?: AbortSignal;
  /** called with the number of entries removed so far, after each one */
  onProgress?: (removed: number) => void;
}

/**
 * Remove `name`, an entry of the directory `parent`, and everything under it. Returns the entries removed. Refuses a
 * name with a path separator or `..`; an entry that is not a real directory (a symlink, a file) is unlinked itself.
 * The count is of the entries under a directory (its own removal is not counted).
 */
export async function removeTreeIn(parent: string, name: string, options: RemoveTreeOptions = {}): Promise<number> {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0'))
    throw new StorageError(path.join(parent, name), 'not a plain entry name; refusing to delete it');
  const target = path.join(await realpath(parent), name);
  const stat = await lstat(target).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw new StorageError(target, `cannot be inspected (${error.code ?? String(error)})`);
  });
  if (!stat) return 0;
  if (!stat.isDirectory()) {
    await unlink(target).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw new StorageError(target, `cannot be removed (${error.code ?? String(error)})`);
    });
    options.onProgress?.(1);
    return 1;
  }
  return runRm(target, options);
}

function runRm(target: string, options: RemoveTreeOptions): Promise<number> {
  options.signal?.throwIfAborted();
  return new Promise((resolve, reject) => {
    const child = spawn('rm', ['-r', '-f', '-v', '--one-file-system', '--', target], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let removed = 0;
    let stderr = '';
    const abort = () => child.kill('SIGTERM');
    options.signal?.addEventListener('abort', abort, { once: true });
    // rm -v names each entry as it goes, the tree's root last: count the entries under the root.
    let seen = false;
    createInterface({ input: child.stdout }).on('line', () => {
      if (seen) {
        removed++;
        options.onProgress?.(removed);
      }
      seen = true;
    });
    child.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < 2000) stderr += chunk.toString('utf8');
    });
    child.on('error', (error) => reject(new StorageError(target, `rm could not run: ${error.message}`)));
    child.on('close', (code) => {
      options.signal?.removeEventListener('abort', abort);
      if (options.signal?.aborted) reject(options.signal.reason);
      else if (code === 0) resolve(removed);
      else reject(new StorageError(target, `rm exited ${code}: ${stderr.trim().split('\n').slice(0, 3).join('; ')}`));
    });
  });
}
