// A Slurm run's allocation is released however the run closes, terminated too: the pipeline starts a guard child once
// its allocation runs, Temporal cancels the guard when the pipeline closes, and the guard releases that job id only.
// Slurm is a stand-in here that records what keel asked of it; the workflow code, a real worker and the real dev server
// are under test (test/e2e/slurm-pipeline.test.ts terminates a run on a real local Slurm cluster).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Context } from '@temporalio/activity';
import { Worker } from '@temporalio/worker';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { notifyActivities } from '../../activities/notify.js';
import { prepareActivities } from '../../activities/prepare.js';
import { KeelClient } from '../../src/client/index.js';
import { formatStatus } from '../../src/cli/commands/run.js';
import { keelPhase } from '../../src/search-attributes.js';
import { statusQuery } from '../../workflows/definitions.js';
import { startWebhookReceiver } from '../support/webhook-receiver.js';
import { repoRoot, startDevServer, workflowBundle } from '../support/temporal.js';
import { commandSpec, eventually, tempDir, uniqueQueue } from '../support/pipeline.js';

interface Release {
  jobId?: string;
  onlyThisJob?: boolean;
  why: string;
}

/**
 * Slurm as a stand-in: the holder job is job 7; with `pendUntil`, it waits in the queue (PENDING, Resources), as the
 * real `slurmAllocate` heartbeats it, until the promise resolves.
 */
function slurmStandIn(options: { pendUntil?: Promise<void>; env?: NodeJS.ProcessEnv } = {}) {
  const calls = { allocated: 0, released: [] as Release[], pendingAsked: 0 };
  return {
    calls,
    activities: {
      ...prepareActivities({ cwd: repoRoot, env: {} }),
      ...notifyActivities({ cwd: repoRoot, env: options.env ?? {} }),
      async checkStep() {
        return { complete: false, checkable: false, reason: 'stand-in: runs' };
      },
      async slurmAllocate({ runKey }: { runKey: string }) {
        calls.allocated++;
        const waitingSince = Date.now();
        let allocated = options.pendUntil === undefined;
        void options.pendUntil?.then(() => (allocated = true));
        while (!allocated) {
          Context.current().heartbeat({ jobId: '7', state: 'PENDING', reason: 'Resources', waitingSince });
          await Context.current().sleep(200);
        }
        const nodes = [1, 2, 3, 4, 5].map((i) => ({ name: `n${i}`, address: `127.0.1.${i}` }));
        const pendingMs = Date.now() - waitingSince;
        return { jobId: '7', jobName: `keel-${runKey}`, nodes, adopted: false, pendingMs, pendingReason: 'Resources' };
      },
      async slurmPending() {
        calls.pendingAsked++;
        return { jobId: '7', state: 'PENDING', reason: 'Resources' };
      },
      async slurmRelease(input: Release) {
        calls.released.push({ jobId: input.jobId, onlyThisJob: input.onlyThisJob, why: input.why });
        return { released: input.jobId ? [{ jobId: input.jobId, state: 'CANCELLED' }] : [] };
      },
      // a step that runs (heartbeating) until it is cancelled; with `pendUntil`, one that ends at once
      async runCommandStep() {
        if (options.pendUntil) return {};
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

  /** A real worker of today's workflows on `queue`, with Slurm's stand-in activities. */
  const workerOn = async (queue: string, activities: object) =>
    Worker.create({
      connection: env.nativeConnection,
      taskQueue: queue,
      workflowBundle: await workflowBundle(),
      activities,
      shutdownGraceTime: '1s',
    });

  it('a terminated run: its guard, cancelled as the run closes, releases the job id it was started for', async () => {
    const slurm = slurmStandIn();
    const queue = uniqueQueue('keel-slurm-guard');
    const worker = await workerOn(queue, slurm.activities);
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

  it("a run waiting for its allocation: KeelPhase allocating, keel status with Slurm's reason, one notification", async () => {
    const hooks = await startWebhookReceiver();
    let allocate!: () => void;
    const slurm = slurmStandIn({
      pendUntil: new Promise<void>((resolve) => (allocate = resolve)),
      env: { KEEL_TEST_SLURM_HOOK_URL: `${hooks.origin}/hook` },
    });
    const queue = uniqueQueue('keel-slurm-pending');
    const worker = await workerOn(queue, slurm.activities);
    const workflowId = `keel-slurm-pending-${Date.now()}`;
    const spec = commandSpec({
      name: 'slurm-pending',
      dir: await tempDir('keel-slurm-pending-'),
      steps: { work: { kind: 'command', argv: ['true'] } },
      overrides: {
        cluster: { executor: { kind: 'slurm', notifyPendingAfter: '2s' } },
        policies: { heartbeatTimeout: '2s', initialRetryInterval: '100ms' },
        notify: { webhooks: [{ urlEnv: 'KEEL_TEST_SLURM_HOOK_URL', format: 'json' }] },
      },
    });
    const keel = await KeelClient.connect({ address: env.address, taskQueue: queue });
    try {
      await worker.runUntil(async () => {
        const handle = await env.client.workflow.start('pipeline', { taskQueue: queue, workflowId, args: [spec] });
        const announced = await eventually(
          async () => hooks.posts.find((p) => p.body.kind === 'allocation-pending'),
          30_000,
          'the allocation-pending notification',
        );
        assert.equal(
          announced.body.text,
          'the run has waited 2 s for its allocation; Slurm job 7 (keel-' + workflowId + ') is PENDING: Resources',
        );
        assert.equal((await handle.describe()).typedSearchAttributes.get(keelPhase), 'allocating');
        const waiting = (await keel.status(workflowId)).pipeline?.allocation;
        assert.deepEqual(
          { state: waiting?.state, jobId: waiting?.jobId, jobState: waiting?.jobState, reason: waiting?.pendingReason },
          { state: 'allocating', jobId: '7', jobState: 'PENDING', reason: 'Resources' },
        );
        // the job has waited about notifyPendingAfter (2 s) by now: the wait began as the activity started, a little after the timer
        assert.ok((waiting?.pendingMs ?? 0) >= 1000, `waiting ${waiting?.pendingMs} ms`);
        assert.match(
          formatStatus({ workflowId, runStatus: 'RUNNING', pipeline: { allocation: waiting } } as Parameters<
            typeof formatStatus
          >[0]),
          /slurm +job 7 \(keel-keel-slurm-pending-\d+\) allocating, PENDING for [0-9.]+ s in the queue \(Resources\)/,
        );
        allocate();
        await handle.result();
        assert.equal((await handle.describe()).typedSearchAttributes.get(keelPhase), 'succeeded');
      });
    } finally {
      await keel.close();
      await hooks.close();
    }
    assert.equal(slurm.calls.pendingAsked, 1, 'Slurm asked once, when the threshold passed');
    assert.equal(hooks.posts.filter((p) => p.body.kind === 'allocation-pending').length, 1, 'announced once');
  });
});
