// The training job's secrets (rayHead.secretEnv): names in the spec, values read from the worker's environment and
// written over stdin into a 0600 file on the head node, which the job's entrypoint loads and deletes before the
// trainer starts (src/recipe/commands.ts). The values never travel in Ray's runtime_env (the dashboard serves it), the
// entrypoint, argv, the workflow's history or a log line.
import { ApplicationFailure } from '@temporalio/activity';
import { posix } from 'node:path';
import { MissingSecretError } from '../src/exec/index.js';
import { renderSecretEnvFile } from '../src/exec/launch-spec.js';
import { nodeName } from '../src/recipe/commands.js';
import type { NodeSpec, Spec } from '../src/spec/schema.js';
import { executorFor, target } from './context.js';
import { failureTypes } from '../src/failure-types.js';
import { assertEnvNameAllowed } from './env-allowlist.js';

/** Where the job's secret file lives on the head node (one per submission id), or undefined without secrets. */
export function jobSecretFile(spec: Spec, head: NodeSpec, jobId: string): string | undefined {
  if (spec.rayHead.secretEnv.length === 0) return undefined;
  const stateDir = spec.cluster.stateDir.replaceAll('{node}', nodeName(head));
  return posix.join(stateDir, 'job-secrets', `${jobId.replace(/[^A-Za-z0-9._-]/g, '_')}.env`);
}

const writeSecretFileScript =
  'umask 077 && mkdir -p -- "$(dirname -- "$1")" && cat > "$1.tmp" && mv -f -- "$1.tmp" "$1"';

/** Write the secret file for a submission; the values come from `env` by the names the spec gives. */
export async function placeJobSecrets(
  spec: Spec,
  head: NodeSpec,
  file: string,
  env: NodeJS.ProcessEnv,
  allowEnv: readonly string[] = [],
): Promise<void> {
  for (const name of spec.rayHead.secretEnv) assertEnvNameAllowed('rayHead.secretEnv', name, allowEnv);
  const names = Object.fromEntries(spec.rayHead.secretEnv.map((name) => [name, name]));
  let content: string | undefined;
  try {
    content = renderSecretEnvFile(names, env);
  } catch (error) {
    if (!(error instanceof MissingSecretError)) throw error;
    throw ApplicationFailure.nonRetryable(
      `rayHead.secretEnv names ${error.envName}, which is not set in the worker's environment: set it where the worker runs`,
      failureTypes.configError,
    );
  }
  if (content === undefined) return;
  const result = await executorFor(spec).run(
    target(head),
    ['sh', '-c', writeSecretFileScript, 'keel-job-secrets', file],
    {
      input: content,
      timeoutMs: 60_000,
    },
  );
  if (result.exitCode !== 0)
    throw new Error(
      `could not write the job's secret file on ${nodeName(head)} (exit ${result.exitCode}): ${result.stderr}`,
    );
}
