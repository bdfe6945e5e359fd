// Retention runs beside supervision (patch keel-0.4-retention-beside-supervision): the next supervision starts while a
// long deletion runs, one retention runs at a time (a checkpoint recorded meanwhile asks for one more pass), and
// training ends only once the last retention has. The cluster, the job and the deletion are stand-ins that record
// when keel called them; the workflow code, the real worker and the real dev server are what is under test.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Context } from '@temporalio/activity';
import { Worker } from '@temporalio/worker';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { trainingStatusQuery } from '../../workflows/definitions.js';
import { patches } from '../../workflows/patches.js';
import { prepareActivities } from '../../activities/prepare.js';
import { startDevServer, workflowBundle, repoRoot } from '../support/temporal.js';
import { commandSpec, tempDir, uniqueQueue } from '../support/pipeline.js';

const deletionMs = 3000;

describe('retention beside supervision', { timeout: 180_000 }, () => {
  let env: TestWorkflowEnvironment;
  before(async () => {
    env = await startDevServer();
  });
  after(async () => {
    await env?.teardown();
  });

  it('supervision goes on during a long deletion; one retention at a time; training ends after the last', async () => {
    const calls = {
      supervised: [] as { at: number; after: number }[],
      retentions: [] as { start: number; end: number }[],
    };
    const checkpoints = [1, 3, 5];
    const activities = {
      ...prepareActivities({ cwd: repoRoot, env: {} }),
      async checkStep({ stepId }: { stepId: string }) {
        return stepId === 'train'
          ? { complete: false, checkable: false, reason: 'stand-in: trains' }
          : { complete: true, reason: 'stand-in: converted earlier' };
      },
      async submitTrainingJob({ runKey }: { runKey: string }) {
        return { jobId: `${runKey}-train-1`, tracker: -1, created: true };
      },
      async superviseUntilCheckpoint({ jobId, afterIteration }: { jobId: string; afterIteration?: number }) {
        const after = afterIteration ?? -1;
        calls.supervised.push({ at: Date.now(), after });
        const cursor = { jobId, offset: 0, resumeVerified: true, evals: [], rewards: [] };
        const next = checkpoints.find((c) => c > after);
        // the trainer takes a second to the next checkpoint: less than a deletion
        await Context.current().sleep(1000);
        return next === undefined
          ? { kind: 'succeeded', evals: [], lastRollout: 5, cursor }
          : { kind: 'checkpoint', iteration: next, saved: [next], evals: [], lastRollout: next, cursor };
      },
      async stopTrainingJob() {},
      async stopLaunched() {},
      async applyRetention() {
        const entry = { start: Date.now(), end: 0 };
        calls.retentions.push(entry);
        for (let t = 0; t < deletionMs; t += 200) {
          Context.current().heartbeat({ deleting: t });
          await Context.current().sleep(200);
        }
        entry.end = Date.now();
        return { keep: [5], deleted: [], deleteNext: [] };
      },
    };
    const queue = uniqueQueue('keel-retention');
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: queue,
      workflowBundle: await workflowBundle(),
      activities,
    });
    const workflowId = `keel-retention-beside-${Date.now()}`;
    const spec = commandSpec({
      name: 'retention-beside',
      dir: await tempDir('keel-retention-beside-'),
      steps: { convert: { kind: 'torch-dist-convert' }, train: { kind: 'train', needs: ['convert'] } },
      overrides: { policies: { heartbeatTimeout: '2s', initialRetryInterval: '100ms' } },
    });
    const { status, finishedAt, history } = await worker.runUntil(async () => {
      const handle = await env.client.workflow.start('pipeline', { taskQueue: queue, workflowId, args: [spec] });
      await handle.result();
      const training = env.client.workflow.getHandle(`${workflowId}-training`);
      const described = await training.describe();
      return {
        status: await training.query(trainingStatusQuery),
        finishedAt: described.closeTime?.getTime() ?? 0,
        history: await training.fetchHistory(),
      };
    });
    assert.deepEqual(
      status.checkpoints.map((c) => c.iteration),
      [1, 3, 5],
    );
    // The supervision after checkpoint 1 started while checkpoint 1's retention was deleting.
    const first = calls.retentions[0]!;
    const next = calls.supervised.find((s) => s.after === 1)!;
    assert.ok(next.at < first.end, `supervision started ${next.at - first.start} ms into a ${deletionMs} ms deletion`);
    // One at a time, and the checkpoints recorded during a deletion were retained after it (not skipped).
    for (let i = 1; i < calls.retentions.length; i++)
      assert.ok(calls.retentions[i]!.start >= calls.retentions[i - 1]!.end, JSON.stringify(calls.retentions));
    assert.ok(calls.retentions.length >= 2, `retentions: ${calls.retentions.length}`);
    assert.ok(finishedAt >= calls.retentions.at(-1)!.end - 1000, 'training ended after its last retention');
    const markers = (history.events ?? []).filter((e) => {
      const data = e.markerRecordedEventAttributes?.details?.['patch-data']?.payloads?.[0]?.data;
      return (
        data !== undefined && data !== null && Buffer.from(data).toString('utf8').includes(patches.retentionBeside)
      );
    });
    assert.equal(markers.length, 1, 'the patch marker is in the history');
  });
});
