// The operations around a weeks-long run, done to a live tiny-local run on a real Ray cluster (upgrades and rolling
// deploys: upgrade.test.ts): an operator terminates a pipeline from the Temporal CLI while its job trains; the training
// child is cancelled (parent-close policy) and stops the job, polled on the Ray Jobs API.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execa, type ResultPromise } from 'execa';
import type { Client } from '@temporalio/client';
import { RayJobsClient, isTerminalStatus } from '../../src/cluster/ray-jobs.js';
import { startLocalCluster, type LocalCluster } from '../../src/local/cluster.js';
import { trainingStatusQuery, type TrainingStatus } from '../../workflows/definitions.js';
import { startControlPlane, type ControlPlane } from '../support/control-plane.js';
import { eventually, eventuallyWhileRunning, tempDir } from '../support/pipeline.js';
import { repoRoot, temporalBinary } from '../support/temporal.js';
import { modelCache, tinySpec } from '../support/tiny-pipeline.js';

const portBase = 26500;

describe('operations on a live run', { timeout: 900_000 }, () => {
  let root: string;
  let cluster: LocalCluster;
  let plane: ControlPlane;
  let worker: ResultPromise | undefined;
  let temporal: { client: Client; close: () => Promise<void> };
  let jobs: RayJobsClient;

  before(async () => {
    root = await tempDir('keel-operations-');
    cluster = await startLocalCluster({ root, repoRoot, nodes: 4, cacheDir: modelCache });
    plane = await startControlPlane({ root, workerEnv: { KEEL_HF_ENDPOINT: cluster.hubEndpoint } });
    temporal = await plane.connect();
    jobs = new RayJobsClient({ url: `http://${cluster.nodes[0]!.host}:${portBase + 1}`, timeoutMs: 5000 });
  });
  after(async () => {
    worker?.kill('SIGKILL');
    await worker;
    await temporal?.close().catch(() => undefined);
    await cluster?.stop();
    await plane?.stopServer();
  });

  const trainingStatus = (workflowId: string): Promise<TrainingStatus | undefined> =>
    temporal.client.workflow
      .getHandle(`${workflowId}-training`)
      .query(trainingStatusQuery)
      .catch(() => undefined);

  it('terminating a pipeline from the CLI stops its Ray job', async () => {
    const spec = tinySpec(cluster, portBase, {
      name: 'terminated',
      model: { saveDir: 'save-terminated/' },
      rollout: { numRollout: 60 },
      rayHead: { jobEnv: { TINY_ROLLOUT_SLEEP_S: '2' } },
    });
    const workflowId = 'terminated';
    worker = plane.startWorker();
    const handle = await temporal.client.workflow.start('pipeline', {
      taskQueue: plane.taskQueue,
      workflowId,
      args: [spec],
    });
    const jobId = await eventuallyWhileRunning(
      handle,
      async () => {
        const status = await trainingStatus(workflowId);
        if (!status?.jobId || status.lastRollout === undefined) return undefined;
        return status.jobId;
      },
      600_000,
      'the job training',
    );
    assert.equal((await jobs.getJob(jobId))?.status, 'RUNNING');
    const terminate = await execa(
      temporalBinary(),
      [
        'workflow',
        'terminate',
        '--address',
        `127.0.0.1:${plane.port}`,
        '--workflow-id',
        workflowId,
        '--reason',
        'stuck',
      ],
      { reject: false },
    );
    assert.equal(terminate.exitCode, 0, terminate.stderr);
    const ended = await eventually(
      async () => {
        const job = await jobs.getJob(jobId);
        return job && isTerminalStatus(job.status) ? job.status : undefined;
      },
      120_000,
      'the job stopped',
    );
    assert.equal(ended, 'STOPPED');
    const child = temporal.client.workflow.getHandle(`${workflowId}-training`);
    const childEnded = await eventually(
      async () => {
        const status = (await child.describe()).status.name;
        return status === 'RUNNING' ? undefined : status;
      },
      60_000,
      'the training child to end',
    );
    assert.equal(childEnded, 'CANCELLED', 'training was cancelled, not terminated');
    assert.equal((await handle.describe()).status.name, 'TERMINATED');
  });
});
