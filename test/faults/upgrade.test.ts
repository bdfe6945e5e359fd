// Upgrades of a live tiny-local run on a real Ray cluster, from each supported release to the current keel:
// - a run started by a release's own workflow bundle (test/fixtures/releases/<tag>.js.gz, built from the tag by
//   scripts/release-bundles.ts) is taken over mid-training by the current worker (its predecessor stopped with
//   SIGTERM, as a service manager does) and completes with its one Ray job, no restart and no failed workflow task;
// - a rolling deploy under Worker Versioning: the current code (A) and a version B whose training changes behind
//   patched() (test/fixtures/upgrade/workflows-v2.ts) poll the queue at once for the whole training; B is made the
//   current version mid-training and the run completes on B with B's marker in its training history and no failed
//   workflow task.
// The workers run today's activities under each release's workflows: the activities a release's workflows call by name
// kept their names and accept the inputs the releases send (fields added since are optional).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { execa, type ResultPromise } from 'execa';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { RayJobsClient } from '../../src/cluster/ray-jobs.js';
import { describeError } from '../../src/client/index.js';
import { startLocalCluster, type LocalCluster } from '../../src/local/cluster.js';
import { workerBuildId } from '../../src/worker-version.js';
import { trainingStatusQuery, type TrainingStatus } from '../../workflows/definitions.js';
import { startControlPlane, type ControlPlane } from '../support/control-plane.js';
import { eventually, eventuallyWhileRunning, tempDir, uniqueQueue } from '../support/pipeline.js';
import { repoRoot, temporalBinary, workflowBundle } from '../support/temporal.js';
import { modelCache, tinySpec } from '../support/tiny-pipeline.js';
import { supportedReleases } from '../../scripts/release-bundles.js';

const portBase = 26900;

describe('upgrades of a live run', { timeout: 1_200_000 }, () => {
  let root: string;
  let cluster: LocalCluster;
  let plane: ControlPlane;
  const workers: ResultPromise[] = [];
  let temporal: { client: Client; close: () => Promise<void> };
  let jobs: RayJobsClient;
  let currentBundle: string;

  before(async () => {
    root = await tempDir('keel-upgrade-');
    cluster = await startLocalCluster({ root, repoRoot, nodes: 4, cacheDir: modelCache });
    plane = await startControlPlane({ root, workerEnv: { KEEL_HF_ENDPOINT: cluster.hubEndpoint } });
    temporal = await plane.connect();
    jobs = new RayJobsClient({ url: `http://${cluster.nodes[0]!.host}:${portBase + 1}`, timeoutMs: 5000 });
    currentBundle = join(root, 'workflow-bundle-current.js');
    await writeFile(currentBundle, (await workflowBundle()).code);
  });
  after(async () => {
    for (const worker of workers) worker.kill('SIGKILL');
    await Promise.all(workers);
    await temporal?.close().catch(() => undefined);
    await cluster?.stop();
    await plane?.stopServer();
  });

  const releaseBundle = async (tag: string): Promise<string> => {
    const path = join(root, `workflow-bundle-${tag}.js`);
    await writeFile(path, gunzipSync(await readFile(join(repoRoot, 'test', 'fixtures', 'releases', `${tag}.js.gz`))));
    return path;
  };
  const startWorker = (taskQueue: string, bundlePath: string, env: Record<string, string> = {}): ResultPromise => {
    const worker = plane.startWorker({ bundlePath, env: { KEEL_TASK_QUEUE: taskQueue, ...env } });
    workers.push(worker);
    return worker;
  };
  // SIGTERM, as a service manager stops a worker (graceful shutdown is graceful-restart.test.ts's subject).
  const stopWorker = async (worker: ResultPromise): Promise<void> => {
    worker.kill('SIGTERM');
    await worker;
  };
  const trainingStatus = (workflowId: string): Promise<TrainingStatus | undefined> =>
    temporal.client.workflow
      .getHandle(`${workflowId}-training`)
      .query(trainingStatusQuery)
      .catch(() => undefined);
  const startRun = async (workflowId: string, taskQueue: string): Promise<WorkflowHandle> => {
    const spec = tinySpec(cluster, portBase, {
      name: workflowId,
      model: { saveDir: `save-${workflowId}/` },
      rollout: { numRollout: 9 },
      rayHead: { jobEnv: { TINY_ROLLOUT_SLEEP_S: '2' } },
    });
    return temporal.client.workflow.start('pipeline', { taskQueue, workflowId, args: [spec] });
  };
  /** The first checkpoint of training, while `worker` (the only one on the queue) keeps running. */
  const firstCheckpoint = (handle: WorkflowHandle, workflowId: string, what: string, worker: ResultPromise) =>
    Promise.race([
      eventuallyWhileRunning(
        handle,
        async () => ((await trainingStatus(workflowId))?.checkpoints.length ?? 0) >= 1 || undefined,
        600_000,
        what,
      ),
      worker.then((r) => assert.fail(`the worker exited (${r.exitCode ?? r.signal}) before ${what}`)),
    ]);
  const historyOf = async (workflowId: string) =>
    (await temporal.client.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
  const failedTasks = async (workflowId: string): Promise<string[]> =>
    (await historyOf(workflowId))
      .filter((e) => e.workflowTaskFailedEventAttributes)
      .map((e) => e.workflowTaskFailedEventAttributes?.failure?.message ?? '?');
  const markers = async (workflowId: string): Promise<string[]> =>
    (await historyOf(workflowId)).flatMap((e) =>
      Object.values(e.markerRecordedEventAttributes?.details ?? {}).flatMap((payloads) =>
        (payloads.payloads ?? []).map((p) => Buffer.from(p.data ?? []).toString()),
      ),
    );

  /** The run succeeded with its one Ray job, no restart, and no workflow task failed in its histories. */
  const assertCompletedCleanly = async (handle: WorkflowHandle, workflowId: string): Promise<void> => {
    const result = await handle.result().catch((e: unknown) => assert.fail(`run failed: ${describeError(e)}`));
    assert.equal((result as { phase: string }).phase, 'succeeded');
    const trained = (await trainingStatus(workflowId))!;
    assert.equal(trained.submissions, 1, 'one submission');
    assert.equal(trained.restarts, 0, 'no restart');
    assert.deepEqual(trained.failures, []);
    assert.equal(trained.checkpoints.at(-1)?.iteration, 8);
    const ours = (await jobs.listJobs()).filter((j) => j.submissionId.startsWith(`${workflowId}-train-`));
    assert.equal(ours.length, 1, 'one Ray job');
    assert.deepEqual(await failedTasks(workflowId), [], 'no failed workflow task in the pipeline');
    assert.deepEqual(await failedTasks(`${workflowId}-training`), [], 'no failed workflow task in training');
  };

  for (const tag of supportedReleases) {
    it(`a run started by ${tag} completes on the current keel`, async () => {
      const workflowId = `from-${tag.replaceAll('.', '-')}`;
      const taskQueue = uniqueQueue(workflowId);
      const old = startWorker(taskQueue, await releaseBundle(tag));
      const handle = await startRun(workflowId, taskQueue);
      await firstCheckpoint(handle, workflowId, `the first checkpoint on ${tag}`, old);
      await stopWorker(old);
      void startWorker(taskQueue, currentBundle);
      await assertCompletedCleanly(handle, workflowId);
    });
  }

  it('rolling deploy: A and B poll at once under Worker Versioning, B takes over at its marker', async () => {
    const workflowId = 'rolling';
    const taskQueue = uniqueQueue(workflowId);
    const deployment = uniqueQueue('keel-deploy');
    const bundleB = join(root, 'workflow-bundle-b.js');
    await writeFile(
      bundleB,
      (await workflowBundle(join(repoRoot, 'test', 'fixtures', 'upgrade', 'workflows-v2.ts'))).code,
    );
    const versioned = { KEEL_DEPLOYMENT_NAME: deployment };
    const a = startWorker(taskQueue, currentBundle, { ...versioned, KEEL_SET_CURRENT_VERSION: '1' });
    const buildA = workerBuildId(await readFile(currentBundle, 'utf8'));
    const buildB = workerBuildId(await readFile(bundleB, 'utf8'));
    assert.notEqual(buildA, buildB);
    const deploymentCli = (command: string[]) =>
      execa(temporalBinary(), ['worker', 'deployment', ...command, '--address', `127.0.0.1:${plane.port}`], {
        reject: false,
      });
    const currentBuild = async (): Promise<string | undefined> => {
      const described = await deploymentCli(['describe', '--name', deployment, '--output', 'json']);
      if (described.exitCode !== 0) return undefined;
      const info = JSON.parse(described.stdout) as { routingConfig?: { currentVersionBuildID?: string } };
      return info.routingConfig?.currentVersionBuildID;
    };
    await eventually(async () => (await currentBuild()) === buildA || undefined, 60_000, 'A the current version');
    void startWorker(taskQueue, bundleB, versioned);

    const handle = await startRun(workflowId, taskQueue);
    await firstCheckpoint(handle, workflowId, 'the first checkpoint on A', a);
    // B polls already; the operator makes it current (docs/upgrading.md). A keeps polling until the run ends.
    const set = await eventually(
      async () => {
        const r = await deploymentCli([
          'set-current-version',
          '--deployment-name',
          deployment,
          '--build-id',
          buildB,
          '--yes',
        ]);
        return r.exitCode === 0 ? r : undefined;
      },
      60_000,
      'B made current',
    );
    assert.equal(set.exitCode, 0, set.stderr);
    assert.equal(await currentBuild(), buildB);
    await assertCompletedCleanly(handle, workflowId);
    assert.ok(a.exitCode === null && a.signalCode === null, 'A polled to the end');
    const trainingMarkers = await markers(`${workflowId}-training`);
    assert.ok(
      trainingMarkers.some((m) => m.includes('keel-upgrade-test-b')),
      `version B's patch is in training's history (markers: ${trainingMarkers.join(' ')})`,
    );
  });
});
