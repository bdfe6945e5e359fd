// A spec's `temporal` section, really used: the dev server has a second namespace; `keel worker --spec FILE` and
// `keel start FILE` get the address, namespace and task queue from the spec alone (no flag, no KEEL_TEMPORAL_* env),
// and the run happens in that namespace, not in `default`.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { WorkflowNotFoundError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { KeelClient } from '../../src/client/index.js';
import { repoRoot, startDevServer } from '../support/temporal.js';
import { commandSpec, tempDir, uniqueQueue } from '../support/pipeline.js';

const namespace = 'keel-second';

/** The env without any Temporal connection setting: only the spec says where to go. */
function envWithoutTemporal(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, KEEL_LOG_LEVEL: 'warn' };
  for (const name of Object.keys(env)) if (/^KEEL_(TEMPORAL_|TASK_QUEUE)/.test(name)) delete env[name];
  return env;
}

describe('spec.temporal', { timeout: 300_000 }, () => {
  let env: TestWorkflowEnvironment;
  let worker: ResultPromise | undefined;
  before(async () => {
    env = await startDevServer({ extraArgs: ['--namespace', namespace] });
  });
  after(async () => {
    worker?.kill('SIGTERM');
    await worker?.catch(() => undefined);
    await env?.teardown();
  });

  it('a worker and a client configured by the spec run the pipeline in its namespace', async () => {
    const dir = await tempDir('keel-spec-temporal-');
    const taskQueue = uniqueQueue('keel-ns');
    const spec = commandSpec({
      name: 'spec-namespace',
      dir,
      steps: { hello: { kind: 'command', argv: ['sh', '-c', 'echo hello from keel-second'] } },
      overrides: { temporal: { address: env.address, namespace, taskQueue } },
    });
    const file = join(dir, 'spec.json');
    await writeFile(file, JSON.stringify(spec));
    const cli = (args: string[]) =>
      execa('node', ['--import', 'tsx', 'src/cli/main.ts', ...args], {
        cwd: repoRoot,
        env: envWithoutTemporal(),
        extendEnv: false,
      });
    worker = cli(['worker', '--spec', file]);
    let workerStderr = '';
    worker.stderr?.on('data', (chunk: Buffer) => (workerStderr += chunk.toString()));

    const started = await cli(['start', file]);
    const workflowId = started.stdout.trim();
    assert.equal(workflowId, 'keel-spec-namespace');

    const keel = await KeelClient.connect({}, spec.temporal);
    try {
      assert.equal(keel.target.namespace, namespace);
      await keel.client.workflow.getHandle(workflowId).result();
      const status = await keel.status(workflowId);
      assert.equal(status.runStatus, 'COMPLETED');
      assert.equal(status.pipeline?.steps.find((s) => s.id === 'hello')?.state, 'succeeded');
    } finally {
      await keel.close();
    }
    assert.match(
      workerStderr,
      new RegExp(`namespace ${namespace} \\(temporal\\.namespace\\), task queue ${taskQueue}`),
    );
    await assert.rejects(env.client.workflow.getHandle(workflowId).describe(), WorkflowNotFoundError);
  });
});
