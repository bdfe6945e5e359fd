// A training job that is always stopped, on a real one-node Ray cluster. Keel talks to the dashboard through a
// stand-in proxy (a small real HTTP proxy in front of it) that refuses what the test tells it to: the first stop
// requests, or everything (a dashboard that no longer answers). The job still ends: STOPPED by Ray after the refused
// requests are asked again, or with its driver stopped on the head over the executor; the outcome says which.
import assert from 'node:assert/strict';
import { access } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { stopJobForSure as stopInActivity, type JobStop, type StopJobOptions } from '../../activities/job-stop.js';
import { RayJobsClient } from '../../src/cluster/ray-jobs.js';
import { LocalExecutor } from '../../src/exec/index.js';
import { tempDir } from '../support/pipeline.js';
import { startRayCluster, venvBin, type LocalRayCluster } from '../support/ray-cluster.js';

/** In an activity's context, as the worker runs it (it logs and heartbeats through the SDK). */
const stopJobForSure = (options: StopJobOptions) =>
  new MockActivityEnvironment().run(stopInActivity, options) as Promise<JobStop>;

const rayAvailable = await access(`${venvBin}/ray`).then(
  () => true,
  () => false,
);

/** The stand-in proxy: forwards to the dashboard, except what `refuse` says no to (HTTP 503). */
async function dashboardProxy(upstream: string) {
  const calls = { stops: 0, refused: 0 };
  const state = { refuseStops: 0, refuseAll: false };
  const target = new URL(upstream);
  const server = http.createServer((req, res) => {
    const isStop = req.method === 'POST' && /\/stop$/.test(req.url ?? '');
    if (isStop) calls.stops++;
    if (state.refuseAll || (isStop && calls.stops <= state.refuseStops)) {
      calls.refused++;
      res.writeHead(503, { 'content-type': 'text/plain' }).end('stand-in proxy: refused');
      return;
    }
    const forward = http.request(
      { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    forward.on('error', () => res.writeHead(502).end());
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, calls, state, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

describe(
  'a training job that is always stopped',
  { skip: rayAvailable ? false : 'ray is not installed in .venv' },
  () => {
    let cluster: LocalRayCluster;
    let proxy: Awaited<ReturnType<typeof dashboardProxy>>;
    let executor: LocalExecutor;
    let direct: RayJobsClient;
    const head = { host: '127.0.1.1', name: 'head' };
    const tag = `${process.pid}-${Date.now()}`;

    before(async () => {
      cluster = await startRayCluster({ nodes: [{ ip: head.host, gpus: 0 }] });
      proxy = await dashboardProxy(cluster.dashboardUrl);
      executor = new LocalExecutor({ stateDir: join(await tempDir('keel-job-stop-'), 'state') });
      direct = new RayJobsClient({ url: cluster.dashboardUrl, timeoutMs: 30_000 });
    });
    after(async () => {
      await proxy?.close();
      await cluster?.stop();
    });

    /** A job that runs until stopped (a driver and a child of it, as a trainer has). */
    const longJob = async (id: string) => {
      await direct.submitJob({ entrypoint: 'sleep 600 & exec sleep 600', submissionId: id });
      await direct.waitForStatus(id, ['RUNNING'], { timeoutMs: 90_000 });
    };
    const viaProxy = () => new RayJobsClient({ url: proxy.url, timeoutMs: 5000 });

    test('the dashboard refuses the first stop requests: they are asked again and Ray reports STOPPED', async () => {
      const id = `keel-stop-refused-${tag}`;
      await longJob(id);
      proxy.state.refuseStops = 2;
      const stopsBefore = proxy.calls.stops;
      const stop = await stopJobForSure({ jobs: viaProxy(), executor, head, jobId: id, heartbeatEveryMs: 1000 });
      assert.equal(stop.how, 'stopped', stop.detail);
      assert.equal(stop.status, 'STOPPED');
      assert.match(stop.detail, /STOPPED after 3 stop request\(s\)/);
      assert.equal(proxy.calls.stops - stopsBefore, 3, 'two refused stop requests, then the one that stopped it');
      assert.equal((await direct.getJob(id))?.status, 'STOPPED');
    });

    test('the dashboard does not answer: the job is stopped on the head over the executor, and the outcome says so', async () => {
      const id = `keel-stop-unreachable-${tag}`;
      await longJob(id);
      proxy.state.refuseAll = true;
      try {
        const stop = await stopJobForSure({
          jobs: viaProxy(),
          executor,
          head,
          jobId: id,
          heartbeatEveryMs: 1000,
          dashboardDeadlineMs: 4000,
        });
        assert.equal(stop.how, 'stopped-on-head', stop.detail);
        assert.match(stop.detail, /did not stop the job within 4 s .*HTTP 503/);
        assert.match(stop.detail, /driver's processes were killed on head/);
      } finally {
        proxy.state.refuseAll = false;
      }
      // Ray itself (asked directly) sees the driver gone: the job ended, and no process writes its log any more.
      const ended = await direct.waitForStatus(id, ['STOPPED', 'FAILED', 'SUCCEEDED'], { timeoutMs: 60_000 });
      assert.ok(['FAILED', 'STOPPED'].includes(ended.status), `Ray reports ${ended.status}`);
      const left = await executor.run(head, [
        'sh',
        '-c',
        'for f in /proc/[0-9]*/fd/1; do readlink "$f"; done 2>/dev/null | grep -c -- "$1" || true',
        'count',
        `job-driver-${id}.log`,
      ]);
      assert.equal(left.stdout.trim(), '0', 'no process of the job is left');
    });

    test('nothing answers (neither the dashboard nor a driver on the head): the outcome is not-stopped, with what to do', async () => {
      proxy.state.refuseAll = true;
      try {
        const stop = await stopJobForSure({
          jobs: viaProxy(),
          executor,
          head,
          jobId: `keel-stop-nowhere-${tag}`,
          heartbeatEveryMs: 1000,
          dashboardDeadlineMs: 2000,
        });
        assert.equal(stop.how, 'not-stopped');
        assert.match(stop.detail, /no driver process of the job on head/);
        assert.match(stop.detail, /stop it by hand/);
      } finally {
        proxy.state.refuseAll = false;
      }
    });
  },
);
