// Every way a training run ends, except continue-as-new, stops its job: here a training that fails and one whose
// pipeline is terminated. The cluster and the Ray job are stand-ins that record what keel asked of them; the workflow
// code, the real worker and the real dev server are what is under test (test/faults/operations.test.ts does the
// termination on a real Ray cluster).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { WorkflowFailedError } from '@temporalio/client';
import { trainingStatusQuery } from '../../workflows/definitions.js';
import { patches } from '../../workflows/patches.js';
import { Worker } from '@temporalio/worker';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startDevServer, workflowBundle } from '../support/temporal.js';
import { commandSpec, eventually, tempDir, uniqueQueue } from '../support/pipeline.js';
import { prepareActivities } from '../../activities/prepare.js';
import { repoRoot } from '../support/temporal.js';
import { KeelClient } from '../../src/client/index.js';
import { formatStatus } from '../../src/cli/commands/run.js';

/**
 * A Ray job stand-in: submitted once, then supervision either fails permanently, waits until cancelled, or reports
 * two checkpoints saved between two of its polls and then the job's success.
 */
function jobStandIn(supervision: 'fails' | 'runs' | 'saves-twice') {
  const calls = { submitted: [] as string[], stopped: [] as string[], supervised: 0 };
  return {
    calls,
    activities: {
      ...prepareActivities({ cwd: repoRoot, env: {} }),
      async checkStep({ stepId }: { stepId: string }) {
        return stepId === 'train'
          ? { complete: false, checkable: false, reason: 'stand-in: trains' }
          : { complete: true, reason: 'stand-in: converted earlier' };
      },
      async submitTrainingJob({ runKey }: { runKey: string }) {
        const jobId = `${runKey}-train-1`;
        calls.submitted.push(jobId);
        return { jobId, tracker: -1, created: true };
      },
      async superviseUntilCheckpoint({ jobId, afterIteration }: { jobId: string; afterIteration?: number }) {
        calls.supervised++;
        const cursor = { jobId, offset: 0, resumeVerified: true, evals: [], rewards: [] };
        if (supervision === 'saves-twice') {
          if ((afterIteration ?? -1) < 5) {
            const evals = [
              { rollout: 2, score: 0.25 },
              { rollout: 5, score: 0.5 },
            ];
            return { kind: 'checkpoint', iteration: 5, saved: [2, 5], evals, lastRollout: 5, cursor };
          }
          return { kind: 'succeeded', evals: [], lastRollout: 5, cursor };
        }
        if (supervision === 'fails') {
          throw ApplicationFailure.nonRetryable('the save directory is not readable', 'BadInput');
        }
        // runs (heartbeating) until the activity is cancelled
        for (;;) {
          Context.current().heartbeat();
          await Context.current().sleep(200);
        }
      },
      async stopTrainingJob({ jobId }: { jobId: string }) {
        calls.stopped.push(jobId);
        // a failing job's stop did not work: neither the dashboard nor the head stopped it
        if (supervision === 'fails')
          return {
            jobId,
            how: 'not-stopped',
            detail: 'stand-in: the dashboard did not stop the job within 120 s; the head did not answer',
            at: new Date().toISOString(),
          };
        return { jobId, how: 'stopped', status: 'STOPPED', detail: 'stand-in: stopped', at: new Date().toISOString() };
      },
      async stopLaunched() {},
      async applyRetention() {
        return { keep: [], deleted: [], deleteNext: [] };
      },
    },
  };
}

describe('training stops its job on the way out', { timeout: 180_000 }, () => {
  let env: TestWorkflowEnvironment;
  before(async () => {
    env = await startDevServer();
  });
  after(async () => {
    await env?.teardown();
  });

  /** A real worker on a queue of its own, running the workflows with the stand-in's activities. */
  const standInWorker = async (job: ReturnType<typeof jobStandIn>, options: { shutdownGraceTime?: string } = {}) => {
    const queue = uniqueQueue('keel-exit');
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: queue,
      workflowBundle: await workflowBundle(),
      activities: job.activities,
      ...options,
    });
    return { queue, worker };
  };

  const specFor = async (name: string) =>
    commandSpec({
      name,
      dir: await tempDir(`keel-${name}-`),
      steps: { convert: { kind: 'torch-dist-convert' }, train: { kind: 'train', needs: ['convert'] } },
      overrides: { policies: { heartbeatTimeout: '2s', initialRetryInterval: '100ms' } },
    });

  it('a training that fails stops its job, and the run fails naming the cause', async () => {
    const job = jobStandIn('fails');
    const { queue, worker } = await standInWorker(job);
    const workflowId = `keel-fails-${Date.now()}`;
    await worker.runUntil(async () => {
      const handle = await env.client.workflow.start('pipeline', {
        taskQueue: queue,
        workflowId,
        args: [await specFor('fails')],
      });
      await assert.rejects(handle.result(), (error: unknown) => {
        assert.ok(error instanceof WorkflowFailedError);
        assert.match(String(error.cause?.message), /step train failed .*the save directory is not readable/);
        return true;
      });
    });
    assert.deepEqual(job.calls.submitted, [`${workflowId}-train-1`]);
    assert.deepEqual(job.calls.stopped, [`${workflowId}-train-1`], 'the job was stopped once');
    // A permanent failure ends training's own re-attach loop at once (keel 0.5, behind its patch).
    assert.equal(job.calls.supervised, 1, 'supervision was not tried again after a non-retryable failure');
    const { events } = await env.client.workflow.getHandle(`${workflowId}-training`).fetchHistory();
    const markers = (events ?? []).flatMap((e) =>
      Object.values(e.markerRecordedEventAttributes?.details ?? {}).flatMap((payloads) =>
        (payloads.payloads ?? []).map((p) => Buffer.from(p.data ?? []).toString()),
      ),
    );
    assert.ok(
      markers.some((m) => m.includes(patches.trainingRetryPermanent)),
      `the patch marker is in the training history (markers: ${markers.join(' ')})`,
    );
    // keel status, from the run's record with no worker, says the job may still run
    const keel = await KeelClient.connect({ address: env.address });
    const status = formatStatus(await keel.status(workflowId));
    assert.match(status, /job keel-fails-\d+-train-1 NOT STOPPED: stand-in: the dashboard did not stop the job/);
  });

  it('terminating the pipeline cancels its training, which stops its job', async () => {
    const job = jobStandIn('runs');
    const { queue, worker } = await standInWorker(job, { shutdownGraceTime: '1s' });
    const workflowId = `keel-terminated-${Date.now()}`;
    await worker.runUntil(async () => {
      const handle = await env.client.workflow.start('pipeline', {
        taskQueue: queue,
        workflowId,
        args: [await specFor('terminated')],
      });
      await eventually(async () => job.calls.submitted.length === 1 || undefined, 60_000, 'a submission');
      await handle.terminate('an operator terminated a stuck run');
      const training = env.client.workflow.getHandle(`${workflowId}-training`);
      await eventually(
        async () => ((await training.describe()).status.name === 'CANCELLED' ? true : undefined),
        60_000,
        'the training child cancelled',
      );
    });
    assert.deepEqual(job.calls.stopped, [`${workflowId}-train-1`], 'the job was stopped once');
  });

  it('two checkpoints saved between two polls are both recorded, with their evals', async () => {
    const job = jobStandIn('saves-twice');
    const { queue, worker } = await standInWorker(job);
    const workflowId = `keel-saves-twice-${Date.now()}`;
    const training = await worker.runUntil(async () => {
      const handle = await env.client.workflow.start('pipeline', {
        taskQueue: queue,
        workflowId,
        args: [await specFor('saves-twice')],
      });
      await handle.result();
      // (a query of a closed workflow is answered by a worker too)
      return env.client.workflow.getHandle(`${workflowId}-training`).query(trainingStatusQuery);
    });
    assert.deepEqual(
      training.checkpoints.map((c) => [c.iteration, c.evalScore]),
      [
        [2, 0.25],
        [5, 0.5],
      ],
    );
  });
});
