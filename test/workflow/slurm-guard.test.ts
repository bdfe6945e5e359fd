// A Slurm run's allocation is released however the run closes, terminated too: the pipeline starts a guard child once
// its allocation runs, Temporal cancels the guard when the pipeline closes, and the guard releases that job id only.
// Slurm is a stand-in here that records what keel asked of it; the workflow code, a real worker and the real dev server
// are under test (test/e2e/slurm-pipeline.test.ts terminates a run on a real local Slurm cluster).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { Worker } from '@temporalio/worker';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { WorkflowHandle } from '@temporalio/client';
import { notifyActivities } from '../../activities/notify.js';
import { prepareActivities } from '../../activities/prepare.js';
import { KeelClient } from '../../src/client/index.js';
import { formatStatus } from '../../src/cli/commands/run.js';
import { keelPhase } from '../../src/search-attributes.js';
import { statusQuery, trainingStatusQuery } from '../../workflows/definitions.js';
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

describe('a Slurm run releases its allocation however it closes', { timeout: 300_000 }, () => {
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
  /**
   * Slurm whose allocations end under the step: job 7, 8, ... in turn; the step's attempt fails in each of the first
   * `endsUnder` allocations, and Slurm then lists that job TIMEOUT.
   */
  function endingAllocations(endsUnder: number) {
    const calls = { jobs: [] as string[], released: [] as Release[], attempts: [] as string[], guardsEnded: 0 };
    const ended = new Set<string>();
    const jobOf = (spec: { cluster: { executor: { jobId?: string } } }) => spec.cluster.executor.jobId!;
    return {
      calls,
      activities: {
        ...prepareActivities({ cwd: repoRoot, env: {} }),
        async checkStep() {
          return { complete: false, checkable: false, reason: 'stand-in: runs' };
        },
        async slurmAllocate({ runKey }: { runKey: string }) {
          const jobId = String(7 + calls.jobs.length);
          calls.jobs.push(jobId);
          const nodes = [1, 2, 3, 4, 5].map((i) => ({ name: `n${i}`, address: `127.0.1.${i}` }));
          return { jobId, jobName: `keel-${runKey}`, nodes, adopted: false, pendingMs: 0 };
        },
        async slurmRelease(input: Release) {
          calls.released.push({ jobId: input.jobId, onlyThisJob: input.onlyThisJob, why: input.why });
          return { released: input.jobId ? [{ jobId: input.jobId, state: 'CANCELLED' }] : [] };
        },
        async slurmAllocationTime({ spec }: { spec: { cluster: { executor: { jobId?: string } } } }) {
          const jobId = jobOf(spec);
          return ended.has(jobId) ? { jobId, state: 'TIMEOUT', live: false } : { jobId, state: 'RUNNING', live: true };
        },
        async runCommandStep({ spec }: { spec: { cluster: { executor: { jobId?: string } } } }) {
          const jobId = jobOf(spec);
          calls.attempts.push(jobId);
          if (calls.jobs.length <= endsUnder) {
            ended.add(jobId);
            // the program Slurm killed at the time limit: a program failure ends the attempt at once
            throw ApplicationFailure.create({
              type: 'ProgramFailed',
              message: `convert exited with signal KILL on n1 (Slurm job ${jobId}: DUE TO TIME LIMIT)`,
            });
          }
          return {};
        },
        async stopLaunched() {},
      },
    };
  }

  const endingSpec = async (name: string) =>
    commandSpec({
      name,
      dir: await tempDir(`keel-${name}-`),
      steps: { work: { kind: 'command', argv: ['true'] } },
      overrides: {
        cluster: { executor: { kind: 'slurm', timeLimit: '1h' } },
        policies: { heartbeatTimeout: '2s', initialRetryInterval: '100ms', maxAttempts: 3 },
      },
    });

  /** A run of `endingSpec(name)` on a worker with `activities`; `check` runs while the worker does. */
  const runOn = async (
    activities: object,
    name: string,
    check: (handle: WorkflowHandle, workflowId: string) => Promise<void>,
  ): Promise<void> => {
    const queue = uniqueQueue(`keel-${name}`);
    const workflowId = `keel-${name}-${Date.now()}`;
    const worker = await workerOn(queue, activities);
    await worker.runUntil(async () => {
      const args = [await endingSpec(name)];
      await check(await env.client.workflow.start('pipeline', { taskQueue: queue, workflowId, args }), workflowId);
    });
  };

  it('an allocation that ended under a step: the step runs again in a new allocation, the old one released', async () => {
    const slurm = endingAllocations(1);
    await runOn(slurm.activities, 'slurm-ended', async (handle, workflowId) => {
      const result = await handle.result();
      assert.equal(result.phase, 'succeeded');
      const status = await handle.query(statusQuery);
      assert.deepEqual(
        { jobId: status.allocation?.jobId, allocations: status.allocation?.allocations },
        { jobId: '8', allocations: 2 },
      );
      // the guard of the first job ended when the run released that job (not only when the run closed)
      assert.equal((await env.client.workflow.getHandle(`${workflowId}-slurm-7`).describe()).status.name, 'COMPLETED');
    });
    assert.deepEqual(slurm.calls.jobs, ['7', '8']);
    assert.deepEqual(slurm.calls.attempts, ['7', '8'], 'not retried on the ended allocation');
    // job 7 by the run as it moved on (its guard, ended, released nothing); job 8 by the run's end, and by its guard
    // once the run closed (it finds the job ended)
    assert.deepEqual(
      slurm.calls.released.slice(0, 2).map((r) => ({ jobId: r.jobId, onlyThisJob: r.onlyThisJob })),
      [
        { jobId: '7', onlyThisJob: true },
        { jobId: '8', onlyThisJob: undefined },
      ],
    );
    assert.deepEqual(
      slurm.calls.released.slice(2).map((r) => r.jobId),
      slurm.calls.released.slice(2).map(() => '8'),
      JSON.stringify(slurm.calls.released),
    );
    assert.match(slurm.calls.released[0]!.why, /Slurm job 7 ended \(TIMEOUT\) under step work/);
  });

  it('two allocations in a row that end under the same step fail the run: the time limit is too short for it', async () => {
    const slurm = endingAllocations(99);
    await runOn(slurm.activities, 'slurm-short', async (handle) => {
      await assert.rejects(handle.result(), (error: Error) => {
        assert.match(
          String((error.cause as Error | undefined)?.message),
          /step work failed .*two allocations in a row ended under step work .*cluster\.executor\.timeLimit is too short for it/,
        );
        return true;
      });
    });
    assert.deepEqual(slurm.calls.jobs, ['7', '8'], 'no third allocation');
    assert.deepEqual(
      slurm.calls.released.slice(0, 2).map((r) => r.jobId),
      ['7', '8'],
      'each released',
    );
  });
  it('a node lost with no spare left in the allocation: training goes on in a new allocation without it', async () => {
    const calls = { allocations: [] as { jobId: string; exclude?: string[] }[], submitted: [] as string[] };
    const jobOf = (spec: { cluster: { executor: { jobId?: string } } }) => spec.cluster.executor.jobId!;
    const activities = {
      ...prepareActivities({ cwd: repoRoot, env: {} }),
      async checkStep({ stepId }: { stepId: string }) {
        return stepId === 'train'
          ? { complete: false, checkable: false, reason: 'stand-in: trains' }
          : { complete: true, reason: 'stand-in: converted earlier' };
      },
      async slurmAllocate({ runKey, exclude }: { runKey: string; exclude?: string[] }) {
        const jobId = String(7 + calls.allocations.length);
        calls.allocations.push({ jobId, exclude });
        const names = ['n1', 'n2', 'n3', 'n4', 'n5', 'n6'].filter((n) => !exclude?.includes(n)).slice(0, 4);
        const nodes = names.map((name) => ({ name, address: `127.0.1.${name.slice(1)}` }));
        return { jobId, jobName: `keel-${runKey}`, nodes, adopted: false, pendingMs: 0 };
      },
      async slurmRelease({ jobId }: Release) {
        return { released: jobId ? [{ jobId, state: 'CANCELLED' }] : [] };
      },
      async slurmAllocationTime({ spec }: { spec: { cluster: { executor: { jobId?: string } } } }) {
        return { jobId: jobOf(spec), state: 'RUNNING', live: true };
      },
      async submitTrainingJob({
        runKey,
        spec,
      }: {
        runKey: string;
        spec: { cluster: { executor: { jobId?: string } } };
      }) {
        const jobId = `${runKey}-train-${calls.submitted.length + 1}`;
        calls.submitted.push(`${jobId} in ${jobOf(spec)}`);
        return { jobId, tracker: calls.submitted.length === 1 ? -1 : 2, created: true };
      },
      // in job 7: n2 is lost after checkpoint 2; in job 8: the job saves its last checkpoint and succeeds
      async superviseUntilCheckpoint(input: {
        jobId: string;
        afterIteration?: number;
        spec: { cluster: { executor: { jobId?: string } } };
      }) {
        const cursor = { jobId: input.jobId, offset: 0, resumeVerified: true, evals: [], rewards: [] };
        const after = input.afterIteration ?? -1;
        if (jobOf(input.spec) === '7') {
          if (after < 2) return { kind: 'checkpoint', iteration: 2, saved: [2], evals: [], lastRollout: 2, cursor };
          const failure = {
            kind: 'node-lost',
            message: 'Slurm: n2 DOWN* (Not responding)',
            lastRollout: 3,
            tracker: 2,
          };
          return { kind: 'failed', failure, evals: [], lastRollout: 3, cursor };
        }
        if (after < 5) return { kind: 'checkpoint', iteration: 5, saved: [5], evals: [], lastRollout: 5, cursor };
        return { kind: 'succeeded', evals: [], lastRollout: 5, cursor };
      },
      async stopTrainingJob({ jobId }: { jobId: string }) {
        return { jobId, how: 'stopped', status: 'STOPPED', detail: 'stand-in: stopped', at: new Date().toISOString() };
      },
      // the allocation's 4 nodes, one of them lost: too few for the 4 the job needs
      async healCluster() {
        return {
          ready: false,
          reason: '3 healthy node(s) of 4 needed; down: n2',
          nodes: ['n1', 'n3', 'n4'],
          quarantined: ['n2'],
        };
      },
      async applyRetention() {
        return { keep: [], deleted: [], deleteNext: [] };
      },
      async stopLaunched() {},
    };
    const queue = uniqueQueue('keel-slurm-exclude');
    const workflowId = `keel-slurm-exclude-${Date.now()}`;
    const spec = commandSpec({
      name: 'slurm-exclude',
      dir: await tempDir('keel-slurm-exclude-'),
      steps: { convert: { kind: 'torch-dist-convert' }, train: { kind: 'train', needs: ['convert'] } },
      overrides: {
        cluster: {
          nodes: [1, 2, 3, 4].map((i) => ({ host: `127.0.1.${i}` })),
          spares: [],
          executor: { kind: 'slurm', timeLimit: '1h' },
        },
        rollout: { numRollout: 6 },
        ckpt: { saveInterval: 3 },
        policies: { heartbeatTimeout: '2s', initialRetryInterval: '100ms' },
      },
    });
    const worker = await workerOn(queue, activities);
    await worker.runUntil(async () => {
      const handle = await env.client.workflow.start('pipeline', { taskQueue: queue, workflowId, args: [spec] });
      assert.equal((await handle.result()).phase, 'succeeded');
      const t = await env.client.workflow.getHandle(`${workflowId}-training`).query(trainingStatusQuery);
      assert.deepEqual(
        t.checkpoints.map((c) => c.iteration),
        [2, 5],
      );
      assert.equal(t.failures.length, 1, 'the loss, carried into the new allocation');
      assert.deepEqual(
        t.allocationEnds?.map((e) => ({ allocation: e.allocation, planned: e.planned, checkpoint: e.checkpoint })),
        [{ allocation: '7', planned: false, checkpoint: 2 }],
      );
      assert.match(t.allocationEnds![0]!.why, /3 healthy node\(s\) of 4 needed; down: n2: a new allocation without n2/);
      const status = await handle.query(statusQuery);
      assert.deepEqual(
        status.allocation?.nodes?.map((n) => n.name),
        ['n1', 'n3', 'n4', 'n5'],
      );
    });
    assert.deepEqual(calls.allocations, [
      { jobId: '7', exclude: undefined },
      { jobId: '8', exclude: ['n2'] },
    ]);
    assert.deepEqual(calls.submitted, [`${workflowId}-train-1 in 7`, `${workflowId}-train-2 in 8`]);
  });
});
