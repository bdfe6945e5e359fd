// The operations around a weeks-long run, done to a live tiny-local run on a real Ray cluster:
// - an upgrade: the run starts on worker version A; mid-training A is stopped (SIGTERM) and version B, whose workflow
//   code differs (test/fixtures/upgrade/workflows-v2.ts, a change guarded by patched()), takes over: the run replays on
//   B and completes with its one Ray job, no restart, and B's new code recorded in its history;
// - a termination: an operator terminates a pipeline from the Temporal CLI while its job trains; the training child is
//   cancelled (parent-close policy) and stops the job, polled on the Ray Jobs API.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import type { Client } from '@temporalio/client';
import { RayJobsClient, isTerminalStatus } from '../../src/cluster/ray-jobs.js';
import { describeError } from '../../src/client/index.js';
import { startLocalCluster, type LocalCluster } from '../../src/local/cluster.js';
import { trainingStatusQuery, type TrainingStatus } from '../../workflows/definitions.js';
import { startControlPlane, type ControlPlane } from '../support/control-plane.js';
import { eventually, eventuallyWhileRunning, tempDir } from '../support/pipeline.js';
import { repoRoot, temporalBinary, workflowBundle } from '../support/temporal.js';
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

  const ourJobs = async (workflowId: string) =>
    (await jobs.listJobs()).filter((j) => j.submissionId.startsWith(`${workflowId}-train-`));

  it('upgrade: a run started on version A completes on version B with its one job and no restart', async () => {
    const bundleB = join(root, 'workflow-bundle-b.js');
    const fixture = join(repoRoot, 'test', 'fixtures', 'upgrade', 'workflows-v2.ts');
    await writeFile(bundleB, (await workflowBundle(fixture)).code);
    const spec = tinySpec(cluster, portBase, {
      name: 'upgrade',
      model: { saveDir: 'save-upgrade/' },
      rollout: { numRollout: 9 },
      rayHead: { jobEnv: { TINY_ROLLOUT_SLEEP_S: '2' } },
    });
    const workflowId = 'upgrade';
    worker = plane.startWorker();
    const handle = await temporal.client.workflow.start('pipeline', {
      taskQueue: plane.taskQueue,
      workflowId,
      args: [spec],
    });
    await eventuallyWhileRunning(
      handle,
      async () => ((await trainingStatus(workflowId))?.checkpoints.length ?? 0) >= 1 || undefined,
      600_000,
      'the first checkpoint on version A',
    );
    // Deploy B: stop A the way a service manager does, start B.
    worker.kill('SIGTERM');
    const stopped = await worker;
    assert.equal(stopped.signal, undefined, 'version A shut down by itself');
    worker = plane.startWorker({ bundlePath: bundleB });

    const result = await handle.result().catch((e: unknown) => assert.fail(`run failed: ${describeError(e)}`));
    assert.equal((result as { phase: string }).phase, 'succeeded');
    const trained = (await trainingStatus(workflowId))!;
    assert.equal(trained.submissions, 1, 'one submission');
    assert.equal(trained.restarts, 0, 'no restart');
    assert.deepEqual(trained.failures, []);
    assert.equal(trained.checkpoints.at(-1)?.iteration, 8);
    assert.equal((await ourJobs(workflowId)).length, 1, 'one Ray job');
    const history = await handle.fetchHistory();
    const markers = (history.events ?? []).flatMap((e) =>
      Object.values(e.markerRecordedEventAttributes?.details ?? {}).flatMap((payloads) =>
        (payloads.payloads ?? []).map((p) => Buffer.from(p.data ?? []).toString()),
      ),
    );
    assert.ok(
      markers.some((m) => m.includes('keel-upgrade-test-v2')),
      `version B's patch is in the run's history (markers: ${markers.join(' ')})`,
    );
    assert.equal((await handle.describe()).memo?.finishedBy, 'version B');
  });

  it('terminating a pipeline from the CLI stops its Ray job', async () => {
    // the same model (preparation steps are skipped as complete), its own save directory
    const spec = tinySpec(cluster, portBase, {
      name: 'terminated',
      model: { saveDir: 'save-terminated/' },
      rollout: { numRollout: 60 },
      rayHead: { jobEnv: { TINY_ROLLOUT_SLEEP_S: '2' } },
    });
    const workflowId = 'terminated';
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
