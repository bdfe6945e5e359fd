// The example client program (examples/start-and-watch.ts) runs against the real dev server and worker.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execa } from 'execa';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import { repoRoot, startDevServer } from '../support/temporal.js';
import { createTestWorker, uniqueQueue } from '../support/pipeline.js';

describe('examples/start-and-watch.ts', { timeout: 180_000 }, () => {
  let env: TestWorkflowEnvironment;
  let worker: Worker;
  let running: Promise<void>;
  const queue = uniqueQueue('keel-example');
  before(async () => {
    env = await startDevServer();
    worker = await createTestWorker(env, queue);
    running = worker.run();
  });
  after(async () => {
    worker?.shutdown();
    await running;
    await env?.teardown();
  });

  it('starts a run, watches it to the end and reads its status', async () => {
    const result = await execa('node', ['--import', 'tsx', 'examples/start-and-watch.ts'], {
      cwd: repoRoot,
      env: { KEEL_TEMPORAL_ADDRESS: env.address, KEEL_TASK_QUEUE: queue },
    });
    assert.match(result.stdout, /^started keel-example-\d+$/m);
    assert.match(result.stdout, /^step hello: succeeded$/m);
    assert.match(result.stdout, /^step after: succeeded$/m);
    assert.match(result.stdout, /^ended: COMPLETED$/m);
    assert.match(result.stdout, /^attempts: hello=1 after=1$/m);
  });
});
