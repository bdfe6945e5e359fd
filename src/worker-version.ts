// A keel worker's deployment version under Temporal's Worker Versioning (docs/upgrading.md): the build id is keel's
// version plus a hash of the workflow bundle the worker runs, so two workers with the same code share a version and
// any change of workflow code (keel's or a fork's) makes a new one.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

export const keelVersion: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

/** `<keel version>-<first 12 hex digits of the bundle's sha256>`, e.g. `0.4.0-3f2a9c81d0e4`. */
export function workerBuildId(bundleCode: string): string {
  return `${keelVersion}-${createHash('sha256').update(bundleCode).digest('hex').slice(0, 12)}`;
}
