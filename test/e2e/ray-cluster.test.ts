// A real 2-node Ray cluster on loopback addresses: the dashboard and Jobs API clients against it, and a scoped
// teardown that leaves no Ray process of this cluster behind.
import assert from 'node:assert/strict';
import { access } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { RayDashboardClient } from '../../src/cluster/ray-dashboard.js';
import { RayJobConflictError, RayJobsClient } from '../../src/cluster/ray-jobs.js';
import {
  processGroupTree,
  processStates,
  startRayCluster,
  venvBin,
  type LocalRayCluster,
} from '../support/ray-cluster.js';

const rayAvailable = await access(`${venvBin}/ray`).then(
  () => true,
  () => false,
);

describe(
  'local Ray cluster',
  { skip: rayAvailable ? false : 'ray is not installed in .venv (run scripts/setup.sh)' },
  () => {
    let cluster: LocalRayCluster;
    let dashboard: RayDashboardClient;
    let jobs: RayJobsClient;
    const runTag = `${process.pid}-${Date.now()}`;

    before(async () => {
      cluster = await startRayCluster({
        nodes: [
          { ip: '127.0.1.1', gpus: 2 },
          { ip: '127.0.1.2', gpus: 2 },
        ],
      });
      dashboard = new RayDashboardClient({ url: cluster.dashboardUrl });
      jobs = new RayJobsClient({ url: cluster.dashboardUrl });
    });

    after(async () => {
      await cluster?.stop();
    });

    test('the dashboard sees two alive nodes and four GPUs', async () => {
      const nodes = await dashboard.listNodes();
      assert.deepEqual(nodes.map((node) => node.nodeIp).sort(), ['127.0.1.1', '127.0.1.2']);
      assert.ok(nodes.every((node) => node.alive && node.gpus === 2));
      assert.equal(nodes.find((node) => node.isHead)?.nodeIp, '127.0.1.1');
      assert.equal(await dashboard.clusterGpuTotal(), 4);
      assert.match((await dashboard.version()).rayVersion, /^\d+\.\d+/);
      // The autoscaler's usage report appears a few seconds after the head starts.
      let usage = await dashboard.resourceUsage();
      for (let tries = 0; usage?.GPU?.total !== 4 && tries < 40; tries += 1) {
        await new Promise((resolve) => setTimeout(resolve, 500));
        usage = await dashboard.resourceUsage();
      }
      assert.deepEqual(usage?.GPU, { used: 0, total: 4 });
    });

    test('a job submitted twice under one submission id is one job; its logs can be read from an offset', async () => {
      const submissionId = `keel-test-hello-${runTag}`;
      const input = {
        entrypoint: `python -c "import os; print('hello from', os.environ['KEEL_PROBE']); print('second line')"`,
        submissionId,
        runtimeEnv: { env_vars: { KEEL_PROBE: 'ray-job' } },
        metadata: { run: 'e2e' },
      };
      const first = await jobs.submitJob(input);
      const second = await jobs.submitJob(input);
      assert.equal(first.created, true);
      assert.equal(second.created, false);
      assert.equal(second.job.submissionId, submissionId);
      assert.equal((await jobs.listJobs()).filter((job) => job.submissionId === submissionId).length, 1);

      const done = await jobs.waitForStatus(submissionId, ['SUCCEEDED'], { timeoutMs: 60_000, pollMs: 500 });
      assert.equal(done.metadata.run, 'e2e');
      assert.equal(done.driverExitCode, 0);
      const all = await jobs.getLogs(submissionId);
      assert.match(all.text, /hello from ray-job\nsecond line/);
      const offset = all.text.indexOf('second line');
      const tail = await jobs.getLogs(submissionId, offset);
      assert.equal(tail.text, all.text.slice(offset));
      assert.equal((await jobs.getLogs(submissionId, all.nextOffset)).text, '');
      assert.equal(await jobs.tailLogs(submissionId, 1), 'second line\n');

      await assert.rejects(jobs.submitJob({ ...input, entrypoint: 'python -c "print(2)"' }), RayJobConflictError);
      assert.equal(await jobs.getJob(`keel-test-missing-${runTag}`), undefined);
    });

    test('a long job is stopped', async () => {
      const submissionId = `keel-test-sleep-${runTag}`;
      await jobs.submitJob({ entrypoint: 'python -c "import time; time.sleep(600)"', submissionId });
      await jobs.waitForStatus(submissionId, ['RUNNING'], { timeoutMs: 60_000, pollMs: 500 });
      assert.equal(await jobs.stopJob(submissionId), true);
      const stopped = await jobs.waitForStatus(submissionId, ['STOPPED'], { timeoutMs: 60_000, pollMs: 500 });
      assert.equal(stopped.status, 'STOPPED');
      // Ray answers true while the job's supervisor actor lives, which it may do for a moment after the status reads
      // STOPPED (job_manager.stop_job asks only whether the actor exists); once it has exited, false.
      const deadline = Date.now() + 60_000;
      while ((await jobs.stopJob(submissionId)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 500));
      assert.equal(
        await jobs.stopJob(submissionId),
        false,
        'a stopped job whose supervisor has exited is not stopped again',
      );
      assert.equal((await jobs.getJob(submissionId))?.status, 'STOPPED');
    });

    test('a killed worker node is reported dead and its GPUs leave the total', async () => {
      const worker = cluster.nodes.find((node) => node.ip === '127.0.1.2')!;
      await cluster.stopNode('127.0.1.2');
      assert.deepEqual(await processGroupTree(worker.pgid), []);
      const deadline = Date.now() + 60_000;
      let nodes = await dashboard.listNodes();
      while (nodes.find((node) => node.nodeIp === '127.0.1.2')?.alive !== false && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 500));
        nodes = await dashboard.listNodes();
      }
      assert.equal(nodes.find((node) => node.nodeIp === '127.0.1.2')?.state, 'DEAD');
      assert.equal(await dashboard.clusterGpuTotal(), 2);
    });

    test('a node started again on the same address rejoins', async () => {
      await cluster.startNode({ ip: '127.0.1.2', gpus: 2 });
      assert.equal(await dashboard.clusterGpuTotal(), 4);
      const states = (await dashboard.listNodes()).filter((node) => node.nodeIp === '127.0.1.2').map((n) => n.state);
      assert.deepEqual(states.sort(), ['ALIVE', 'DEAD']);
    });

    test('a node can be frozen (hung) and thawed', async () => {
      const frozen = await cluster.pauseNode('127.0.1.2');
      assert.ok(frozen.length >= 2, `paused ${frozen.length} processes`);
      try {
        assert.ok([...(await processStates(frozen)).values()].every((state) => state === 'T'));
      } finally {
        assert.deepEqual((await cluster.resumeNode('127.0.1.2')).sort(), [...frozen].sort());
      }
      assert.ok([...(await processStates(frozen)).values()].every((state) => state !== 'T'));
    });

    test('stopping the cluster leaves none of its processes', async () => {
      const groups = cluster.nodes.map((node) => node.pgid);
      await cluster.stop();
      for (const pgid of groups) assert.deepEqual(await processGroupTree(pgid), []);
    });
  },
);
