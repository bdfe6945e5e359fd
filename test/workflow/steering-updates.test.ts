// Steering only through validated Updates (keel 0.5): a pause sent right after the start, while the run is still being
// prepared, is held and answered once the run is prepared (before any step starts); resume and stopAfterCheckpoint
// follow; the run's history holds Updates and no signal. A run that fails to prepare refuses what it held, with the
// reason. The cluster and the Ray job are stand-ins that record what keel asked of them; the workflow code, the client,
// the real worker and the real dev server are what is under test.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Context } from '@temporalio/activity';
import { Worker } from '@temporalio/worker';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import proto from '@temporalio/proto';
import { KeelClient, SteeringRefusedError } from '../../src/client/index.js';
import { prepareActivities } from '../../activities/prepare.js';
import { patches } from '../../workflows/patches.js';
import { repoRoot, startDevServer, workflowBundle } from '../support/temporal.js';
import { commandSpec, eventually, tempDir, uniqueQueue } from '../support/pipeline.js';

const EventType = proto.temporal.api.enums.v1.EventType;

/** prepareRun waits at a gate the test opens; supervision reports a checkpoint when the test releases it. */
function standIn() {
  let openGate!: () => void;
  const gate = new Promise<void>((resolve) => (openGate = resolve));
  const calls = { checked: 0, submitted: 0, supervising: 0, stopped: 0 };
  let released = false;
  const real = prepareActivities({ cwd: repoRoot, env: {} });
  return {
    calls,
    openGate,
    release: () => (released = true),
    activities: {
      ...real,
      async prepareRun(input: Parameters<typeof real.prepareRun>[0]) {
        await gate;
        return real.prepareRun(input);
      },
      async checkStep({ stepId }: { stepId: string }) {
        calls.checked++;
        return stepId === 'train'
          ? { complete: false, checkable: false, reason: 'stand-in: trains' }
          : { complete: true, reason: 'stand-in: converted earlier' };
      },
      async submitTrainingJob({ runKey }: { runKey: string }) {
        calls.submitted++;
        return { jobId: `${runKey}-train-1`, tracker: -1, created: true };
      },
      async superviseUntilCheckpoint({ jobId, afterIteration }: { jobId: string; afterIteration?: number }) {
        calls.supervising++;
        while (!released) {
          Context.current().heartbeat();
          await Context.current().sleep(100);
        }
        const iteration = (afterIteration ?? -1) + 3;
        const cursor = { jobId, offset: 0, resumeVerified: true, evals: [], rewards: [] };
        return { kind: 'checkpoint', iteration, evals: [], lastRollout: iteration, cursor };
      },
      async stopTrainingJob() {
        calls.stopped++;
      },
      async stopLaunched() {},
      async applyRetention() {
        return { keep: [], deleted: [], deleteNext: [] };
      },
    },
  };
}

describe('steering through Updates only', { timeout: 180_000 }, () => {
  let env: TestWorkflowEnvironment;
  before(async () => {
    env = await startDevServer();
  });
  after(async () => {
    await env?.teardown();
  });

  const specFor = async (name: string) =>
    commandSpec({
      name,
      dir: await tempDir(`keel-${name}-`),
      steps: { convert: { kind: 'torch-dist-convert' }, train: { kind: 'train', needs: ['convert'] } },
      overrides: { policies: { heartbeatTimeout: '2s', initialRetryInterval: '100ms' } },
    });

  /** The stand-in job's activities on a worker of their own queue, and a client that starts runs there. */
  const workerAndClient = async (queuePrefix: string) => {
    const job = standIn();
    const taskQueue = uniqueQueue(queuePrefix);
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: job.activities,
    });
    const keel = await KeelClient.connect({ address: env.address, namespace: 'default', taskQueue });
    return { job, worker, keel, taskQueue };
  };

  const eventTypes = async (keel: KeelClient, workflowId: string) =>
    ((await keel.client.workflow.getHandle(workflowId).fetchHistory()).events ?? []).map((e) => e.eventType);

  it('a pause right after the start is held until the run is prepared, then answered; the history has no signal', async () => {
    const { job, worker, keel } = await workerAndClient('keel-steer');
    try {
      await worker.runUntil(async () => {
        const { workflowId } = await keel.start(await specFor('steered'));
        const pausing = keel.pause(workflowId);
        // The pause is accepted while prepareRun still waits at its gate: it is held, not refused, not a signal.
        await eventually(
          async () =>
            (await eventTypes(keel, workflowId)).includes(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED) ||
            undefined,
          60_000,
          'the pause accepted before the run is prepared',
        );
        job.openGate();
        const paused = await pausing;
        assert.match(paused.message, /^paused: no new step starts until resume/);
        const status = await keel.status(workflowId);
        assert.equal(status.pipeline?.phase, 'paused');
        assert.equal(job.calls.checked, 0, 'no step started before the held pause took effect');

        const resumed = await keel.resume(workflowId);
        assert.match(resumed.message, /the pipeline runs again/);
        await eventually(async () => job.calls.supervising > 0 || undefined, 60_000, 'training supervising its job');
        const stopping = await keel.stopAfterCheckpoint(workflowId);
        assert.match(stopping.message, /stops its job at its next checkpoint/);
        // A refusal is the validator's reason, not a silent signal.
        await assert.rejects(keel.resume(workflowId), (error: unknown) => {
          assert.ok(error instanceof SteeringRefusedError);
          assert.match(error.message, /the run is not paused/);
          return true;
        });
        job.release();
        await keel.client.workflow.getHandle(workflowId).result();

        const events = (await keel.client.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
        const types = events.map((e) => e.eventType);
        assert.equal(
          types.filter((t) => t === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED).length,
          0,
          'no signal reached the run',
        );
        assert.equal(types.filter((t) => t === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED).length, 3);
        const firstAccepted = types.indexOf(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED);
        const prepared = types.indexOf(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED);
        assert.ok(firstAccepted < prepared, 'the pause was accepted before prepareRun completed');
        const markers = events.flatMap((e) =>
          Object.values(e.markerRecordedEventAttributes?.details ?? {}).flatMap((payloads) =>
            (payloads.payloads ?? []).map((p) => Buffer.from(p.data ?? []).toString()),
          ),
        );
        assert.ok(
          markers.some((m) => m.includes(patches.steeringByUpdates)),
          'the patch marker is in the history',
        );
      });
    } finally {
      await keel.close();
    }
    assert.equal(job.calls.submitted, 1);
    assert.equal(job.calls.stopped, 1, 'the job was stopped at its checkpoint');
  });

  it('a run that fails to prepare refuses a held Update with the reason', async () => {
    const { job, worker, keel, taskQueue } = await workerAndClient('keel-steer-bad');
    try {
      await worker.runUntil(async () => {
        // past the client's own check, as the Web UI's Start Workflow form would send it
        const workflowId = `keel-unprepared-${Date.now()}`;
        await keel.client.workflow.start('pipeline', {
          taskQueue,
          workflowId,
          args: [{ preset: 'tiny-local', overrides: { rollout: { numRollout: -1 } } }],
        });
        const pausing = keel.pause(workflowId);
        await eventually(
          async () =>
            (await eventTypes(keel, workflowId)).includes(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED) ||
            undefined,
          60_000,
          'the pause accepted before the run is prepared',
        );
        job.openGate();
        await assert.rejects(pausing, (error: unknown) => {
          assert.ok(error instanceof SteeringRefusedError, String(error));
          assert.match(error.message, /pause refused by .*the run failed to prepare: .*rollout\.numRollout/s);
          return true;
        });
      });
    } finally {
      await keel.close();
    }
  });
});
