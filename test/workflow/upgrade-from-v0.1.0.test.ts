// A training started by keel v0.1.0 cannot be taken over by the current keel (docs/upgrading.md, "Releases and which
// runs upgrade"): v0.1.0's own workflow bundle (test/fixtures/releases/v0.1.0.js.gz) trains to a checkpoint, its worker
// stops, and the current worker's replay of the run is refused as non-deterministic (a failed workflow task, the run
// still running). What the guide tells an operator to do then -- stop the current worker, start v0.1.0's again -- lets
// the run finish with its one job. The job and the cluster are stand-ins that answer as v0.1.0's activities did; the
// workflow code of both versions, the real workers and the real dev server are what is under test.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { Context } from '@temporalio/activity';
import { Worker } from '@temporalio/worker';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { trainingStatusQuery } from '../../workflows/definitions.js';
import { startDevServer, workflowBundle, repoRoot } from '../support/temporal.js';
import { commandSpec, eventually, tempDir, uniqueQueue } from '../support/pipeline.js';

describe('a v0.1.0 training and the current keel', { timeout: 240_000 }, () => {
  let env: TestWorkflowEnvironment;
  before(async () => {
    env = await startDevServer();
  });
  after(async () => {
    await env?.teardown();
  });

  it("is refused by the current worker's replay and finishes on v0.1.0's worker", async () => {
    const dir = await tempDir('keel-from-v010-');
    const v010 = join(dir, 'workflow-bundle-v0.1.0.js');
    await writeFile(v010, gunzipSync(await readFile(join(repoRoot, 'test', 'fixtures', 'releases', 'v0.1.0.js.gz'))));
    const current = join(dir, 'workflow-bundle-current.js');
    await writeFile(current, (await workflowBundle()).code);
    let submissions = 0;
    let finish = false;
    const activities = {
      async submitTrainingJob({ runKey }: { runKey: string }) {
        submissions++;
        return { jobId: `${runKey}-train-1`, tracker: -1, created: true };
      },
      // checkpoint 1, then the job trains on until `finish` (heartbeating, as supervision does), then succeeds
      async superviseUntilCheckpoint({ afterIteration }: { afterIteration?: number }) {
        if ((afterIteration ?? -1) < 1) return { kind: 'checkpoint', iteration: 1, evals: [], lastRollout: 1 };
        while (!finish) {
          Context.current().heartbeat();
          await Context.current().sleep(200);
        }
        return { kind: 'succeeded', evals: [], lastRollout: 2 };
      },
      async applyRetention() {
        return { keep: [1], deleted: [], deleteNext: [] };
      },
      async stopTrainingJob() {},
    };
    const queue = uniqueQueue('keel-from-v010');
    const workerOf = async (codePath: string) =>
      Worker.create({
        connection: env.nativeConnection,
        taskQueue: queue,
        workflowBundle: { codePath },
        activities,
        shutdownGraceTime: '1s',
      });
    const spec = commandSpec({
      name: 'from-v010',
      dir,
      steps: { train: { kind: 'train' } },
      overrides: { policies: { heartbeatTimeout: '2s', initialRetryInterval: '100ms' } },
    });
    const workflowId = `from-v010-${Date.now()}-training`;
    const handle = await env.client.workflow.start('training', {
      taskQueue: queue,
      workflowId,
      args: [{ spec, runKey: 'from-v010' }],
    });
    const old = await workerOf(v010);
    await old.runUntil(() =>
      eventually(
        async () => ((await handle.query(trainingStatusQuery)).checkpoints.length >= 1 ? true : undefined),
        60_000,
        'checkpoint 1 on v0.1.0',
      ),
    );

    const failedTasks = async () =>
      ((await handle.fetchHistory()).events ?? [])
        .filter((e) => e.workflowTaskFailedEventAttributes)
        .map((e) => e.workflowTaskFailedEventAttributes?.failure?.message ?? '?');
    const refusal = await (
      await workerOf(current)
    ).runUntil(() =>
      eventually(
        async () => (await failedTasks()).find((m) => m.includes('Nondeterminism')),
        90_000,
        "the current keel's refusal",
      ),
    );
    assert.match(refusal, /TMPRL1100.*UpsertWorkflowSearchAttributes/, refusal);
    assert.equal((await handle.describe()).status.name, 'RUNNING', 'the run is not lost');

    finish = true;
    const back = await workerOf(v010);
    const result = (await back.runUntil(handle.result())) as { restarts: number; lastCheckpoint?: number };
    assert.equal(result.restarts, 0);
    assert.equal(result.lastCheckpoint, 1);
    assert.equal(submissions, 1, 'one job');
  });
});
