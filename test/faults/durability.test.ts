// The control plane fails, training does not notice: the control worker is SIGKILLed mid-segment and another one
// re-attaches; the Temporal dev server is stopped and started again on the same SQLite file; the run goes on. All the
// while the Ray Jobs API on the head is polled: never more than one live job for the run, and one submission in all.
// Real processes: the dev server and the workers are separate programs, the local cluster runs over ssh.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { statusQuery, trainingStatusQuery, type TrainingStatus } from '../../workflows/definitions.js';
import { describeError } from '../../src/client/index.js';
import { startLocalCluster, type LocalCluster } from '../../src/local/cluster.js';
import { RayJobsClient } from '../../src/cluster/ray-jobs.js';
import { isTerminalStatus } from '../../src/cluster/ray-jobs.js';
import { sshUnavailableReason } from '../support/sshd.js';
import { eventually, eventuallyWhileRunning, tempDir } from '../support/pipeline.js';
import { startControlPlane, type ControlPlane } from '../support/control-plane.js';
import type { ResultPromise } from 'execa';
import { modelCache, tinySpec } from '../support/tiny-pipeline.js';
import { repoRoot } from '../support/temporal.js';

const skip = sshUnavailableReason();
const portBase = 26100;

describe('control-plane faults during training', { skip, timeout: 1_800_000 }, () => {
  let root: string;
  let cluster: LocalCluster;
  let plane: ControlPlane;
  let worker: ResultPromise | undefined;

  before(async () => {
    root = await tempDir('keel-durable-');
    cluster = await startLocalCluster({ root, repoRoot, nodes: 4, ssh: true, cacheDir: modelCache });
    plane = await startControlPlane({
      root,
      workerEnv: { KEEL_HF_ENDPOINT: cluster.hubEndpoint, KEEL_LOG_LEVEL: 'warn' },
      // Temporal suggests continue-as-new after 4096 events by default; here after 30, so the training workflow
      // continues as new several times during this short run and must re-attach to its job each time.
      serverArgs: ['--dynamic-config-value', 'limit.historyCount.suggestContinueAsNew=30'],
    });
  });
  after(async () => {
    worker?.kill('SIGTERM');
    await worker;
    await cluster?.stop();
    await plane?.stopServer();
    await rm(root, { recursive: true, force: true });
  });
  const startWorker = (): ResultPromise => plane.startWorker();
  const connect = () => plane.connect();
  const stopServer = () => plane.stopServer();
  const startServer = () => plane.startServer();

  it('a SIGKILLed worker and a restarted server: the run goes on with one job, never two', async () => {
    const spec = tinySpec(cluster, portBase, {
      name: 'durable',
      model: { saveDir: 'save-durable/' },
      rollout: { numRollout: 30 },
      rayHead: { jobEnv: { TINY_ROLLOUT_SLEEP_S: '1' } },
    });
    const workflowId = 'durable';
    worker = startWorker();
    let temporal = await connect();
    const handle = await temporal.client.workflow.start('pipeline', {
      taskQueue: plane.taskQueue,
      workflowId,
      args: [spec],
    });
    const trainingStatus = async (): Promise<TrainingStatus | undefined> =>
      temporal.client.workflow
        .getHandle(`${workflowId}-training`)
        .query(trainingStatusQuery)
        .catch(() => undefined);

    // Watch the Jobs API on the head for the whole run.
    const jobs = new RayJobsClient({ url: `http://${cluster.nodes[0]!.host}:${portBase + 1}`, timeoutMs: 3000 });
    const submissions = new Set<string>();
    let mostLive = 0;
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const listed = await jobs.listJobs().catch(() => []);
        const ours = listed.filter((j) => j.submissionId.startsWith(`${workflowId}-train-`));
        for (const j of ours) submissions.add(j.submissionId);
        mostLive = Math.max(mostLive, ours.filter((j) => !isTerminalStatus(j.status)).length);
        await new Promise((r) => setTimeout(r, 1000));
      }
    })();

    try {
      await eventuallyWhileRunning(
        handle,
        async () => ((await trainingStatus())?.checkpoints.length ?? 0) >= 1 || undefined,
        900_000,
        'a checkpoint',
      );

      // The server goes away mid-run and comes back on the same SQLite file.
      await temporal.close().catch(() => undefined);
      await stopServer();
      await new Promise((r) => setTimeout(r, 5000));
      await startServer();
      temporal = await connect();
      // A worker that gave up while the server was away is restarted, as a service manager would.
      const exited = await Promise.race([
        worker.then(() => true),
        new Promise((r) => setTimeout(() => r(false), 2000)),
      ]);
      if (exited) worker = startWorker();
      const afterRestart = temporal.client.workflow.getHandle(workflowId);
      await eventuallyWhileRunning(
        afterRestart,
        async () => ((await trainingStatus())?.checkpoints.length ?? 0) >= 2 || undefined,
        600_000,
        'a checkpoint after the server restart',
      );

      // The worker dies in the middle of a supervision segment; a new one takes over.
      const killedAt = (await trainingStatus())?.lastRollout;
      worker.kill('SIGKILL');
      await worker;
      await new Promise((r) => setTimeout(r, 3000));
      worker = startWorker();

      const result = await temporal.client.workflow
        .getHandle(workflowId)
        .result()
        .catch((e: unknown) => assert.fail(`run failed: ${describeError(e)}`));
      assert.equal((result as { phase: string }).phase, 'succeeded');
      const training = (await trainingStatus())!;
      assert.ok(training, 'the training status is readable after the restart');
      assert.equal(training.submissions, 1, 'the job was never resubmitted');
      assert.deepEqual(training.failures, [], 'neither fault reached training');
      assert.equal(training.checkpoints.at(-1)?.iteration, 29);
      assert.ok(killedAt !== undefined && killedAt < 29, `the worker was killed mid-run (at rollout ${killedAt})`);
      const pipelineStatus = await temporal.client.workflow.getHandle(workflowId).query(statusQuery);
      assert.equal(pipelineStatus.phase, 'succeeded');
      // Every run of the training chain, once visibility has the last one (it may trail the result by a moment).
      const trainingRuns = await eventually(
        async () => {
          const statuses: string[] = [];
          for await (const run of temporal.client.workflow.list({ query: `WorkflowId = '${workflowId}-training'` }))
            statuses.push(run.status.name);
          return statuses.includes('COMPLETED') ? statuses : undefined;
        },
        30_000,
        'the training runs in visibility',
      );
      assert.ok(
        trainingRuns.filter((status) => status === 'CONTINUED_AS_NEW').length >= 1,
        `the training workflow continued as new, then completed: ${trainingRuns.join(', ')}`,
      );
    } finally {
      watching = false;
      await watcher;
      await temporal.close().catch(() => undefined);
    }
    assert.equal(mostLive, 1, `live jobs for the run at one time: at most ${mostLive}`);
    assert.equal(submissions.size, 1, `submissions seen by Ray: ${[...submissions].join(', ')}`);
  });
});
