// The scale benchmark's stand-in nodes keep the executor's contract: the probe's answer parses as a real node's, the
// nonce is seen through shared storage only, `ray start` joins the stand-in dashboard and `stop` takes it out, and the
// executor's bound on commands in flight holds. No timing is asserted.
import assert from 'node:assert/strict';
import os from 'node:os';
import { after, before, test } from 'node:test';
import { execa } from 'execa';
import { RayDashboardClient } from '../../src/cluster/ray-dashboard.js';
import { buildProbeCommand, formatProbeSection, parseProbeOutput } from '../../src/cluster/node-probe.js';
import { UnknownProcessError } from '../../src/exec/errors.js';
import { SimulatedCluster, SimulatedExecutor } from '../support/simulated-cluster.js';

const cluster = new SimulatedCluster({
  latencyMs: 5,
  rayRegistrationMs: 0,
  sharedDirs: ['/sim/shared'],
  existingDirs: ['/sim/slime'],
});
const executor = new SimulatedExecutor(cluster, (node) => `/sim/state/${node.name ?? node.host}`, 3);
const a = { host: '10.1.0.1', name: 'sim-a' };
const b = { host: '10.1.0.2', name: 'sim-b' };
let dashboard: { port: number; close: () => Promise<void> };

before(async () => {
  dashboard = await cluster.serveDashboard();
});
after(async () => {
  await dashboard.close();
});

test('the canned sections are printed as the real probe script prints them', async () => {
  const [file, ...args] = buildProbeCommand();
  const real = (await execa(file!, args, { stripFinalNewline: false })).stdout;
  assert.ok(real.includes(formatProbeSection('nproc', `${os.availableParallelism()}\n`)), real);
});

test('the probe answers like the captured H200 node, with the nonce of shared storage and the slime directory', async () => {
  await executor.writeFile(a, '/sim/shared/.keel/probe-1', 'nonce-1');
  const argv = buildProbeCommand({
    dir: '/sim/shared',
    nonceFile: '/sim/shared/.keel/probe-1',
    requiredDir: '/sim/slime',
  });
  const probe = parseProbeOutput(
    (await executor.run(b, argv, { timeoutMs: 60_000, env: { PATH: '/usr/bin' } })).stdout,
  );
  assert.equal(probe.hostname, 'sim-b');
  assert.deepEqual(probe.addresses, ['10.1.0.2']);
  assert.equal(probe.cpus, 64);
  assert.equal(probe.nvidiaSmi, 'ok');
  assert.equal(probe.gpus.length, 4);
  assert.ok(probe.gpus.every((g) => g.name === 'NVIDIA H200'));
  assert.ok(probe.memory && probe.memory.totalBytes > 0);
  assert.ok(probe.disk && probe.disk.availableBytes > 0);
  assert.equal(probe.nonce, 'nonce-1');
  assert.equal(probe.requiredDirExists, true);
  assert.deepEqual(probe.problems, []);

  // A node's own path is not shared storage; a directory no node has is missing.
  await executor.writeFile(a, '/tmp/probe-2', 'nonce-2');
  const own = parseProbeOutput(
    (await executor.run(b, buildProbeCommand({ nonceFile: '/tmp/probe-2', requiredDir: '/elsewhere' }))).stdout,
  );
  assert.equal(own.nonce, undefined);
  assert.equal(own.requiredDirExists, false);
  assert.deepEqual(own.problems, []);
});

test('ray start joins the stand-in dashboard with its address and GPUs; stop takes it out', async () => {
  const ray = new RayDashboardClient({ url: `http://127.0.0.1:${dashboard.port}`, timeoutMs: 5000 });
  await assert.rejects(ray.aliveNodes(), /api\/v0\/nodes\S* -> HTTP 503: a text reply of \d+ bytes/);
  const argv = ['ray', 'start', '--head', '--node-ip-address', '10.1.0.1', '--num-gpus', '4', '--block'];
  const first = await executor.launch(a, { id: 'run/ray/sim-a', argv });
  assert.equal(first.reattached, false);
  assert.deepEqual(first.record.argv, argv);
  const again = await executor.launch(a, { id: 'run/ray/sim-a', argv });
  assert.equal(again.reattached, true);
  assert.equal(again.record.pid, first.record.pid);
  assert.equal((await executor.status(a, 'run/ray/sim-a'))?.state, 'running');
  const alive = await ray.aliveNodes();
  assert.deepEqual(
    alive.map((n) => [n.nodeIp, n.gpus, n.isHead]),
    [['10.1.0.1', 4, true]],
  );

  await executor.stop(a, 'run/ray/sim-a');
  const stopped = await executor.status(a, 'run/ray/sim-a');
  assert.equal(stopped?.state, 'exited');
  assert.equal(stopped?.exitCode, 137);
  await assert.rejects(executor.stop(b, 'run/ray/sim-b'), UnknownProcessError);
  assert.equal(await executor.status(b, 'run/ray/sim-b'), undefined);
});

test('a command the simulation was not built for fails and says so', async () => {
  const result = await executor.run(a, ['nvidia-smi', '-L']);
  assert.equal(result.exitCode, 127);
  assert.match(result.stderr, /simulated node sim-a: no canned answer for nvidia-smi -L/);
});

test('no more commands are in flight than the executor allows', async () => {
  cluster.reset();
  const results = await Promise.all(Array.from({ length: 12 }, (_, i) => executor.run(i % 2 ? a : b, ['true'])));
  assert.ok(results.every((r) => r.exitCode === 0));
  assert.equal(cluster.commands.get('run:true'), 12);
  assert.equal(cluster.maxInFlight, 3);
});
