// A rolling restart of the control worker never touches what it launched: SIGTERM to the worker while the convert
// gang runs, and again while the trainer runs. Each time the worker exits promptly, the program goes on (the same
// pids, from the process records; the same Ray job and driver pid, from the Jobs API), a new worker re-attaches, and
// the run completes with one conversion attempt, one submission and no training restart.
// Real processes: the dev server and the workers are separate programs, the local cluster runs real torchrun and Ray.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ResultPromise } from 'execa';
import type { Client } from '@temporalio/client';
import { executorFor, target } from '../../activities/context.js';
import { RayHttp } from '../../src/cluster/ray-http.js';
import { RayJobsClient } from '../../src/cluster/ray-jobs.js';
import { describeError } from '../../src/client/index.js';
import { gangMemberId } from '../../src/exec/index.js';
import { startLocalCluster, type LocalCluster } from '../../src/local/cluster.js';
import type { Spec } from '../../src/spec/index.js';
import { statusQuery, trainingStatusQuery } from '../../workflows/definitions.js';
import { startControlPlane, type ControlPlane } from '../support/control-plane.js';
import { eventuallyWhileRunning, tempDir } from '../support/pipeline.js';
import { repoRoot } from '../support/temporal.js';
import { modelCache, tinySpec } from '../support/tiny-pipeline.js';

const portBase = 26300;

describe('graceful restarts of the control worker', { timeout: 600_000 }, () => {
  let root: string;
  let cluster: LocalCluster;
  let plane: ControlPlane;
  let worker: ResultPromise | undefined;
  let temporal: { client: Client; close: () => Promise<void> };

  before(async () => {
    root = await tempDir('keel-graceful-');
    cluster = await startLocalCluster({ root, repoRoot, nodes: 4, cacheDir: modelCache });
    plane = await startControlPlane({ root, workerEnv: { KEEL_HF_ENDPOINT: cluster.hubEndpoint } });
    temporal = await plane.connect();
  });
  after(async () => {
    worker?.kill('SIGKILL');
    await worker;
    await temporal?.close().catch(() => undefined);
    await cluster?.stop();
    await plane?.stopServer();
  });

  /** SIGTERM, as a service manager stops it: the worker must exit by itself, well before a KILL would come. */
  const terminate = async (running: ResultPromise): Promise<number> => {
    const started = Date.now();
    running.kill('SIGTERM');
    const result = await Promise.race([running, new Promise<undefined>((r) => setTimeout(() => r(undefined), 60_000))]);
    assert.ok(result, 'the worker exited within a minute of SIGTERM');
    assert.equal(result.signal, undefined, `the worker shut down by itself (it died of ${result.signal})`);
    return Date.now() - started;
  };

  it('SIGTERM during the conversion and during training: the programs go on, the next worker re-attaches', async () => {
    const spec: Spec = tinySpec(cluster, portBase, {
      name: 'graceful',
      model: { saveDir: 'save-graceful/' },
      rollout: { numRollout: 6 },
      // Test knobs of the tiny stand-ins: each conversion rank waits before saving, each rollout takes 4 s.
      cluster: { env: { TINY_CONVERT_SLEEP_S: '15' } },
      rayHead: { jobEnv: { TINY_ROLLOUT_SLEEP_S: '4' } },
    });
    const workflowId = 'graceful';
    const executor = executorFor(spec);
    const convertRanks = spec.cluster.nodes.map((node, rank) => ({
      node: target(node),
      id: gangMemberId(`${workflowId}/convert`, rank),
    }));
    const rankPids = async () => Promise.all(convertRanks.map(async ({ node, id }) => executor.status(node, id)));

    worker = plane.startWorker();
    const handle = await temporal.client.workflow.start('pipeline', {
      taskQueue: plane.taskQueue,
      workflowId,
      args: [spec],
    });

    // 1. The conversion gang runs on every node: SIGTERM the worker.
    const before = await eventuallyWhileRunning(
      handle,
      async () => {
        const statuses = await rankPids();
        return statuses.every((s) => s?.state === 'running') ? statuses : undefined;
      },
      240_000,
      'the conversion running on every node',
    );
    const convertStoppedIn = await terminate(worker);
    const during = await rankPids();
    for (const [rank, status] of during.entries()) {
      assert.equal(status?.state, 'running', `rank ${rank} still runs after the worker exited`);
      assert.equal(status?.pid, before[rank]!.pid, `rank ${rank} is the same process`);
    }
    worker = plane.startWorker();

    // 2. The trainer runs (its first rollout logged, mid-segment: no checkpoint yet): SIGTERM the worker again.
    const trainingStatus = () =>
      temporal.client.workflow
        .getHandle(`${workflowId}-training`)
        .query(trainingStatusQuery)
        .catch(() => undefined);
    const dashboardUrl = `http://${cluster.nodes[0]!.host}:${portBase + 1}`;
    const jobs = new RayJobsClient({ url: dashboardUrl, timeoutMs: 5000 });
    const dashboard = new RayHttp({ url: dashboardUrl, timeoutMs: 5000 });
    const training = await eventuallyWhileRunning(
      handle,
      async () => {
        const status = await trainingStatus();
        if (!status?.jobId) return undefined;
        return /\brollout 0: /.test((await jobs.getLogs(status.jobId)).text) ? status : undefined;
      },
      300_000,
      'the first rollout of the training job',
    );
    const driverBefore = await driverOf(dashboard, training.jobId!);
    const trainStoppedIn = await terminate(worker);
    const driverAfter = await driverOf(dashboard, training.jobId!);
    assert.equal(driverAfter.status, 'RUNNING', 'the job runs on without a worker');
    assert.equal(driverAfter.pid, driverBefore.pid, 'the same driver process');
    worker = plane.startWorker();

    const result = await handle.result().catch((e: unknown) => assert.fail(`run failed: ${describeError(e)}`));
    assert.equal((result as { phase: string }).phase, 'succeeded');
    const status = await handle.query(statusQuery);
    const convert = status.steps.find((s) => s.id === 'convert')!;
    assert.equal(convert.state, 'succeeded');
    assert.equal(convert.attempts, 1, 'the conversion ran once, in one attempt');
    const after = await rankPids();
    for (const [rank, record] of after.entries()) {
      assert.equal(record?.pid, before[rank]!.pid, `rank ${rank}: never launched again`);
      assert.equal(record?.state, 'exited');
      assert.equal(record?.exitCode, 0);
    }
    const trained = (await trainingStatus())!;
    assert.equal(trained.submissions, 1, 'one submission');
    assert.equal(trained.restarts, 0, 'no training restart');
    assert.deepEqual(trained.failures, []);
    assert.equal(trained.checkpoints.at(-1)?.iteration, 5);
    const jobIds = (await jobs.listJobs()).filter((j) => j.submissionId.startsWith(`${workflowId}-train-`));
    assert.equal(jobIds.length, 1, 'one Ray job');
    // Supervision read the driver's log file by byte range (never the whole log over HTTP), and the supervision the
    // last worker retried resumed at the offset the interrupted one had heartbeated.
    const logs = (
      await Promise.all([1, 2, 3].map((n) => readFile(join(root, `worker-${n}.log`), 'utf8').catch(() => '')))
    ).join('\n');
    const entries = logs
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { msg?: string; offset?: number; resumed?: boolean });
    assert.deepEqual(
      entries.filter((e) => e.msg === 'reading the whole job log over HTTP on every poll'),
      [],
      'no fallback to the whole log',
    );
    const resumed = entries.find((e) => e.msg === 'supervision resumes in the job log' && e.resumed);
    assert.ok(resumed && (resumed.offset ?? 0) > 0, 'the retried supervision resumed from its heartbeat');
    console.log(
      `  the worker exited ${convertStoppedIn} ms (convert) and ${trainStoppedIn} ms (training) after SIGTERM`,
    );
  });
});

/** The job's status and its driver's pid, from the Jobs API (`driver_info`). */
async function driverOf(dashboard: RayHttp, id: string): Promise<{ status: string; pid: string | undefined }> {
  const body = (await dashboard.json(`/api/jobs/${encodeURIComponent(id)}`)) as {
    status: string;
    driver_info?: { pid?: string } | null;
  };
  return { status: body.status, pid: body.driver_info?.pid };
}
