// Infrastructure smoke test: a workflow and an activity on the real Temporal dev server and a real worker.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from '@temporalio/worker';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startDevServer, workflowBundle, repoRoot } from '../support/temporal.js';
import * as activities from './smoke-activities.js';

describe('Temporal dev server smoke test', () => {
  let env: TestWorkflowEnvironment;
  before(async () => {
    env = await startDevServer();
  });
  after(async () => {
    await env?.teardown();
  });

  it('runs a workflow through a real worker', async () => {
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: 'keel-smoke',
      workflowBundle: await workflowBundle(`${repoRoot}test/workflow/smoke-workflows.ts`),
      activities,
    });
    const result = await worker.runUntil(
      env.client.workflow.execute('smoke', {
        taskQueue: 'keel-smoke',
        workflowId: `smoke-${Date.now()}`,
        args: ['keel'],
      }),
    );
    assert.equal(result, `hello keel from pid ${process.pid}`, 'the activity ran in this worker');
  });

  it('registered the Keel* search attributes', async () => {
    const response = await env.connection.operatorService.listSearchAttributes({ namespace: 'default' });
    const names = Object.keys(response.customAttributes ?? {});
    for (const name of ['KeelPhase', 'KeelRollout', 'KeelCheckpoint', 'KeelPreset', 'KeelEvalScore']) {
      assert.ok(names.includes(name), `missing ${name}; have ${names.join(', ')}`);
    }
  });
});
