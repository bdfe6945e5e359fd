import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  dashboardUrl,
  rayHeadStartArgs,
  rayStopArgs,
  rayTempDirFor,
  rayWorkerStartArgs,
} from '../../src/cluster/ray-commands.js';

// slime's launch script, word for word with $MASTER_ADDR=10.0.0.1 and $WORKER_IP=10.0.0.2.
const contractHead =
  'ray start --head --node-ip-address 10.0.0.1 --num-gpus 8 --disable-usage-stats --dashboard-host=0.0.0.0 --dashboard-port=8265';
const contractWorker =
  'ray start --address=10.0.0.1:6379 --num-gpus 8 --node-ip-address 10.0.0.2 --disable-usage-stats';

test('defaults render the contract commands exactly', () => {
  assert.equal(rayHeadStartArgs({ nodeIp: '10.0.0.1' }).join(' '), contractHead);
  assert.equal(rayWorkerStartArgs({ nodeIp: '10.0.0.2', headIp: '10.0.0.1' }).join(' '), contractWorker);
  assert.equal(rayHeadStartArgs({ nodeIp: '10.0.0.1', port: 6379 }).join(' '), contractHead);
  assert.deepEqual(rayStopArgs(), ['ray', 'stop']);
  assert.deepEqual(rayStopArgs({ force: true, rayBin: '/venv/bin/ray' }), ['/venv/bin/ray', 'stop', '--force']);
});

test('options append to the contract command, never reorder it', () => {
  const head = rayHeadStartArgs({
    rayBin: '/venv/bin/ray',
    nodeIp: '127.0.1.1',
    numGpus: 2,
    port: 46379,
    dashboardHost: '127.0.1.1',
    dashboardPort: 48265,
    tempDir: '/tmp/ray a',
    numCpus: 4,
    resources: { node_rank_0: 1 },
    extraArgs: ['--ray-client-server-port=40001'],
  });
  assert.deepEqual(head, [
    '/venv/bin/ray',
    'start',
    '--head',
    '--node-ip-address',
    '127.0.1.1',
    '--num-gpus',
    '2',
    '--disable-usage-stats',
    '--dashboard-host=127.0.1.1',
    '--dashboard-port=48265',
    '--port=46379',
    '--num-cpus=4',
    '--temp-dir=/tmp/ray a',
    '--resources={"node_rank_0":1}',
    '--ray-client-server-port=40001',
  ]);
  const worker = rayWorkerStartArgs({ nodeIp: '127.0.1.2', headIp: '127.0.1.1', port: 46379, numGpus: 2 });
  assert.deepEqual(worker.slice(0, 8), [
    'ray',
    'start',
    '--address=127.0.1.1:46379',
    '--num-gpus',
    '2',
    '--node-ip-address',
    '127.0.1.2',
    '--disable-usage-stats',
  ]);
  assert.equal(worker.length, 8);
});

test('dashboard URL', () => {
  assert.equal(dashboardUrl('10.0.0.1'), 'http://10.0.0.1:8265');
  assert.equal(dashboardUrl('fd00::1', 9000), 'http://[fd00::1]:9000');
});

test("Ray's temp dir: inside the node's state dir when short, else a stable short dir named by its hash", () => {
  assert.equal(rayTempDirFor('/srv/keel/n1'), '/srv/keel/n1/ray');
  const long = '/home/someone/work/keel/.keel/local-seed2/nodes/127.0.1.3';
  const short = rayTempDirFor(long);
  assert.match(short, /^\/tmp\/keel-ray-[0-9a-f]{12}$/);
  assert.equal(rayTempDirFor(long), short, 'the same node gets the same dir on every bring-up');
  assert.notEqual(rayTempDirFor(`${long}0`), short);
  // Ray's socket path under it stays within the kernel's 107 bytes
  assert.ok(Buffer.byteLength(`${short}/session_2026-11-29_06-16-44_995833_2346/sockets/dashboard_agent`) <= 107);
});
