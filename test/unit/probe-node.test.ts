// The node probe script, run for real by sh on this host. nvidia-smi is absent here, so the GPU branch is driven by
// a replay stub that accepts only the exact query keel sends and prints the real output captured on an H200 node.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, statfs, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { computeAppsQueryArgs, gpuQueryArgs } from '../../src/cluster/gpu-probe.js';
import { buildProbeCommand, parseProbeOutput, parseProbeSections } from '../../src/cluster/node-probe.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const fixtureDir = path.join(repoRoot, 'test', 'fixtures', 'nvidia-h200-x4-node');
let tmp: string;
let storage: string;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'keel-probe-'));
  // A directory name a shell would misread if it were ever pasted into the script.
  storage = path.join(tmp, `shared storage 'x' $(touch pwned) ;`);
  await mkdir(storage);
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function runProbe(pathPrefix?: string): Promise<string> {
  const [file, ...args] = buildProbeCommand({ dir: storage });
  const env = pathPrefix ? { PATH: `${pathPrefix}:${process.env.PATH ?? ''}` } : {};
  const result = await execa(file!, args, { env, cwd: tmp });
  return result.stdout;
}

function hasNvidiaSmi(): boolean {
  try {
    execFileSync('sh', ['-c', 'command -v nvidia-smi'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

test('the probe reports this host as node and os see it', async () => {
  const probe = parseProbeOutput(await runProbe());
  assert.equal(probe.hostname, os.hostname());
  assert.equal(probe.cpus, os.availableParallelism());
  assert.ok(probe.memory);
  assert.ok(Math.abs(probe.memory.totalBytes - os.totalmem()) / os.totalmem() < 0.01);
  const fsStats = await statfs(storage);
  assert.ok(probe.disk);
  assert.equal(probe.disk.sizeBytes, fsStats.blocks * fsStats.bsize);
  // non-loopback addresses, as the OS lists them (none inside a loopback-only network namespace)
  const external = Object.values(os.networkInterfaces())
    .flat()
    .filter((a) => a && !a.internal);
  assert.equal(probe.addresses.length > 0, external.length > 0, `addresses: ${probe.sections.addresses?.output}`);
  await assert.rejects(readFile(path.join(tmp, 'pwned')), { code: 'ENOENT' });
  if (!hasNvidiaSmi()) {
    assert.equal(probe.nvidiaSmi, 'absent');
    assert.deepEqual(probe.gpus, []);
  }
  assert.deepEqual(probe.problems, []);
});

async function stubNvidiaSmi(body: string): Promise<string> {
  const bin = await mkdtemp(path.join(tmp, 'bin-'));
  await writeFile(path.join(bin, 'nvidia-smi'), `#!/bin/sh\n${body}\n`);
  await chmod(path.join(bin, 'nvidia-smi'), 0o755);
  return bin;
}

test('with nvidia-smi: GPUs, the processes holding them and a verdict per GPU', async () => {
  const gpuQuery = gpuQueryArgs().slice(1).join(' ');
  const appsQuery = computeAppsQueryArgs().slice(1).join(' ');
  const bin = await stubNvidiaSmi(
    [
      `if [ "$*" = "${gpuQuery}" ]; then cat '${fixtureDir}/query-gpu.csv'`,
      `elif [ "$*" = "${appsQuery}" ]; then cat '${fixtureDir}/compute-apps.csv'`,
      'else echo "unexpected arguments: $*" >&2; exit 9; fi',
    ].join('\n'),
  );
  const probe = parseProbeOutput(await runProbe(bin));
  assert.deepEqual(probe.problems, []);
  assert.equal(probe.nvidiaSmi, 'ok');
  assert.equal(probe.gpus.length, 4);
  assert.equal(probe.gpus[3]?.memoryTotalMiB, 143771);
  assert.equal(probe.gpus[0]?.smClockMHz, 1980);
  assert.deepEqual(
    probe.gpuApps.map((app) => app.pid),
    [833, 833, 833, 833],
  );
  assert.deepEqual(
    probe.gpuHealth.map((gpu) => [gpu.status, gpu.pids]),
    Array.from({ length: 4 }, () => ['busy', [833]]),
  );
});

test('a failing nvidia-smi (driver gone) is reported, not taken for a GPU-less node', async () => {
  const bin = await stubNvidiaSmi(
    'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver."; exit 9',
  );
  const probe = parseProbeOutput(await runProbe(bin));
  assert.equal(probe.nvidiaSmi, 'failed');
  assert.deepEqual(probe.gpus, []);
  assert.match(probe.problems.join('\n'), /gpus: exit 9: NVIDIA-SMI has failed/);
});

test('sections: output without a trailing newline, a section cut short, and exit codes', () => {
  const sections = parseProbeSections(
    [
      '',
      '@@keel-probe begin nproc@@',
      '8',
      '@@keel-probe end nproc 0@@',
      '',
      '@@keel-probe begin df@@',
      'df: /nope: No such file or directory',
      '',
      '@@keel-probe end df 1@@',
      '',
      '@@keel-probe begin meminfo@@',
      'MemTotal: 1 kB',
    ].join('\n'),
  );
  assert.deepEqual(sections, {
    nproc: { output: '8', exitCode: 0 },
    df: { output: 'df: /nope: No such file or directory', exitCode: 1 },
    meminfo: { output: 'MemTotal: 1 kB', exitCode: undefined },
  });
  const probe = parseProbeOutput(
    '@@keel-probe begin df@@\ndf: /nope: No such file or directory\n@@keel-probe end df 1@@\n',
  );
  assert.equal(probe.disk, undefined);
  assert.deepEqual(probe.problems, ['df: exit 1: df: /nope: No such file or directory']);
});

test('one command a node: the nonce file read back and the required directory, answers rather than problems', async () => {
  const nonceFile = path.join(storage, 'probe nonce $(touch pwned)');
  await writeFile(nonceFile, 'nonce-42\n');
  const [file, ...args] = buildProbeCommand({ dir: storage, nonceFile, requiredDir: storage });
  const seen = parseProbeOutput((await execa(file!, args, { cwd: tmp })).stdout);
  assert.equal(seen.nonce?.trim(), 'nonce-42');
  assert.equal(seen.requiredDirExists, true);
  assert.deepEqual(seen.problems, []);

  const [file2, ...args2] = buildProbeCommand({
    dir: storage,
    nonceFile: path.join(storage, 'absent'),
    requiredDir: path.join(tmp, 'no-slime'),
  });
  const unseen = parseProbeOutput((await execa(file2!, args2, { cwd: tmp })).stdout);
  assert.equal(unseen.nonce, undefined);
  assert.equal(unseen.requiredDirExists, false);
  assert.deepEqual(unseen.problems, []);
  await assert.rejects(readFile(path.join(tmp, 'pwned')), { code: 'ENOENT' });

  // Not asked: no sections, no answers.
  const plain = parseProbeOutput(await runProbe());
  assert.equal(plain.nonce, undefined);
  assert.equal(plain.requiredDirExists, undefined);
});
