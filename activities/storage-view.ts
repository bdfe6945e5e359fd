// The control worker reads and writes storage.baseDir itself: the native FP8 cast runs in it, the conversion's
// completion check and retention read the save dir from it. So it must see baseDir as the nodes do, at the same
// path. The probe writes a nonce file there on a node; the worker reads it back before anything is downloaded.
import { ApplicationFailure } from '@temporalio/activity';
import { readFile } from 'node:fs/promises';
import type { Spec } from '../src/spec/schema.js';
import { failureTypes } from '../src/failure-types.js';

/** Why the worker does not see the nonce file a node wrote, or undefined when it does. */
export async function workerStorageProblem(
  spec: Spec,
  nonceFile: string,
  nonce: string,
  writtenOn: string,
): Promise<string | undefined> {
  const seen = await readFile(nonceFile, 'utf8').catch((error: NodeJS.ErrnoException) => error);
  if (typeof seen === 'string' && seen.trim() === nonce) return undefined;
  const why =
    typeof seen === 'string'
      ? 'holds another nonce there'
      : seen.code === 'ENOENT'
        ? 'is not there'
        : `cannot be read there (${seen.code ?? seen.message})`;
  return (
    `the keel worker does not see storage.baseDir ${spec.storage.baseDir} as the nodes do: ${nonceFile}, written on ` +
    `${writtenOn}, ${why}. The worker runs the native cast, the conversion's completion check and checkpoint ` +
    `retention on that directory: mount the nodes' storage at ${spec.storage.baseDir} on the worker too (docs/operations.md)`
  );
}

/** Fail at once (ConfigError): no retry mounts a file system on the worker. */
export async function checkWorkerStorageView(spec: Spec, nonceFile: string, nonce: string, writtenOn: string) {
  const problem = await workerStorageProblem(spec, nonceFile, nonce, writtenOn);
  if (problem) throw ApplicationFailure.nonRetryable(problem, failureTypes.configError);
}
