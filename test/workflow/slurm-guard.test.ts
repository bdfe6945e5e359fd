// A Slurm run's allocation is released however the run closes, terminated too: the pipeline starts a guard child once
// its allocation runs, Temporal cancels the guard when the pipeline closes, and the guard releases that job id only.
// Slurm is a stand-in here that records what keel asked of it; the workflow code, a real worker and the real dev server
// are under test (test/e2e/slurm-pipeline.test.ts terminates a run on a real local Slurm cluster).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Context } from '@temporalio/activity';
import { Worker } from '@temporalio/worker';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { prepareActivities } from '../../activities/prepare.js';
import { statusQuery } from '../../workflows/definitions.js';
import { repoRoot, startDevServer, workflowBundle } from '../support/temporal.js';
import { commandSpec, eventually, tempDir, uniqueQueue } from '../support/pipeline.js';

interface Release {
  jobId?: string;
  onlyThisJob?: boolean;
  why: string;
}

function slurmStandIn() {
  const calls = { allocated: 0, released: [] as Release[] };
  return {
    calls,
    activities: {
      ...prepareActivities({ cwd: repoRoot, env: {} }),
      async checkStep() {
        return { complete: false, checkable: false, reason: 'stand-in: runs' };
      },
      async slurmAllocate({ runKey }: { runKey: string }) {
        calls.allocated++;
        const nodes = [1, 2, 3, 4, 5].map((i) => ({ name: `n${i}`, address: `127.0.1.${i}` }));
        return { jobId: '7', jobName: `keel-${runKey}`, nodes, adopted: false, pendingMs: 0 };
      },
      async slurmRelease(input: Release) {
        calls.released.push({ jobId: input.jobId, onlyThisJob: input.onlyThisJob, why: input.why });
        return { released: input.jobId ? [{ jobId: input.jobId, state: 'CANCELLED' }] : [] };
      },
      // a step that runs (heartbeating) until it is cancelled
      async runCommandStep() {
        for (;;) {
          Context.current().heartbeat();
          await Context.current().sleep(200);
        }
      },
      async stopLaunched() {},
    },
  };
}

describe('a Slurm run releases its allocation however it closes', { timeout: 180_000 }, () => {
  let env: TestWorkflowEnvironment;
  before(async () => {
    env = await startDevServer();
  });
  after(async () => {
    await env?.teardown();
  });

  it('a terminated run: its guard, cancelled as the run closes, releases the job id it was started for', async () => {
    const slurm = slurmStandIn();
    const queue = uniqueQueue('keel-slurm-guard');
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: queue,
      workflowBundle: await workflowBundle(),
      activities: slurm.activities,
      shutdownGraceTime: '1s',
    });
    const workflowId = `keel-slurm-terminated-${Date.now()}`;
    const spec = commandSpec({
      name: 'slurm-guard',
      dir: await tempDir('keel-slurm-guard-'),
      steps: { work: { kind: 'command', argv: ['sleep', '600'] } },
      overrides: {
        cluster: { executor: { kind: 'slurm' } },
        policies: { heartbeatTimeout: '2s', initialRetryInterval: '100ms' },
      },
    });
    await worker.runUntil(async () => {
      const handle = await env.client.workflow.start('pipeline', { taskQueue: queue, workflowId, args: [spec] });
      const guard = env.client.workflow.getHandle(`${workflowId}-slurm-7`);
      await eventually(
        async () => {
          const held = (await handle.query(statusQuery).catch(() => undefined))?.allocation?.state === 'held';
          const running = (await guard.describe().catch(() => undefined))?.status.name === 'RUNNING';
          return (held && running) || undefined;
        },
        60_000,
        'the allocation held and its guard running',
      );
      assert.deepEqual(slurm.calls.released, [], 'nothing released while the run runs');
      await handle.terminate('the test terminates the run');
      await eventually(async () => slurm.calls.released.length > 0 || undefined, 60_000, 'a release');
      await guard.result();
    });
    assert.equal(slurm.calls.allocated, 1);
    assert.equal(slurm.calls.released.length, 1, JSON.stringify(slurm.calls.released));
    assert.deepEqual(
      { jobId: slurm.calls.released[0]!.jobId, onlyThisJob: slurm.calls.released[0]!.onlyThisJob },
      { jobId: '7', onlyThisJob: true },
      'the guard released its job id, and only that',
    );
  });
});
