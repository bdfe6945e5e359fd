import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  assessGpus,
  parseComputeAppsCsv,
  parseGpuList,
  parseGpuQueryCsv,
  type GpuRecord,
} from '../../src/cluster/gpu-probe.js';

// Real nvidia-smi outputs from a 4 x H200 node (see the fixture README). The copies in test/fixtures are the files
// of record; the shared originals are compared with them when present.
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const fixtureDir = path.join(repoRoot, 'test', 'fixtures', 'nvidia-h200-x4-node');
const sharedDir = path.resolve(repoRoot, '..', 'shared', 'fixtures', 'nvidia-h200-x4-node');
const fixture = (name: string) => readFileSync(path.join(fixtureDir, name), 'utf8');

const uuids = [
  'GPU-437787e1-30b6-95ae-cfa3-673071e6d02d',
  'GPU-4b0cdff0-4fa4-41e6-0f14-21ba657ef46f',
  'GPU-09a61562-7d94-1f19-f908-7b78e21ea86c',
  'GPU-c0f58982-4506-bb08-ac74-6d899544d5b1',
] as const;

test('the fixture copies are byte-identical to the shared originals', { skip: !existsSync(sharedDir) }, () => {
  for (const name of [
    'query-gpu.csv',
    'query-gpu-noheader.csv',
    'compute-apps.csv',
    'compute-apps-noheader.csv',
    'compute-apps-idle.csv',
    'list.txt',
    'meminfo.txt',
    'df.txt',
    'nproc.txt',
    'free.txt',
    'ip.txt',
  ]) {
    assert.deepEqual(readFileSync(path.join(fixtureDir, name)), readFileSync(path.join(sharedDir, name)), name);
  }
});

test('query-gpu CSV with header and units: every column, named by the header', () => {
  const gpus = parseGpuQueryCsv(fixture('query-gpu.csv'));
  assert.equal(gpus.length, 4);
  assert.deepEqual(gpus[0], {
    index: 0,
    uuid: uuids[0],
    name: 'NVIDIA H200',
    pciBusId: '00000000:00:06.0',
    driverVersion: '580.159.04',
    memoryTotalMiB: 143771,
    memoryUsedMiB: 2437,
    memoryFreeMiB: 140720,
    utilizationPercent: 0,
    temperatureC: 42,
    powerDrawW: 129.09,
    eccUncorrectedVolatile: 0,
    smClockMHz: 1980,
  } satisfies GpuRecord);
  assert.deepEqual(
    gpus.map((gpu) => [gpu.index, gpu.uuid, gpu.temperatureC, gpu.powerDrawW]),
    [
      [0, uuids[0], 42, 129.09],
      [1, uuids[1], 42, 125.32],
      [2, uuids[2], 40, 124.4],
      [3, uuids[3], 41, 128.54],
    ],
  );
});

test('query-gpu CSV without header or units: columns named by the query', () => {
  const fields = ['index', 'uuid', 'name', 'memory.total', 'memory.used', 'ecc.errors.uncorrected.volatile.total'];
  const gpus = parseGpuQueryCsv(fixture('query-gpu-noheader.csv'), fields);
  assert.deepEqual(gpus[3], {
    index: 3,
    uuid: uuids[3],
    name: 'NVIDIA H200',
    memoryTotalMiB: 143771,
    memoryUsedMiB: 2437,
    eccUncorrectedVolatile: 0,
  });
  assert.deepEqual(
    gpus.map((gpu) => gpu.uuid),
    uuids,
  );
});

test('values a GPU does not support are missing, not zero', () => {
  const text = [
    'index, uuid, name, memory.total [MiB], ecc.errors.uncorrected.volatile.total, power.draw [W]',
    '0, GPU-aaaa, NVIDIA GeForce RTX 4090, 24564 MiB, [N/A], [Not Supported]',
  ].join('\n');
  assert.deepEqual(parseGpuQueryCsv(text), [
    { index: 0, uuid: 'GPU-aaaa', name: 'NVIDIA GeForce RTX 4090', memoryTotalMiB: 24564 },
  ]);
});

test('compute-apps CSV with and without header; the idle file lists no process', () => {
  const withHeader = parseComputeAppsCsv(fixture('compute-apps.csv'));
  assert.equal(withHeader.length, 4);
  assert.deepEqual(withHeader[0], { pid: 833, gpuUuid: uuids[0], processName: 'python3', usedMemoryMiB: 2428 });
  const noHeader = parseComputeAppsCsv(fixture('compute-apps-noheader.csv'), ['pid', 'gpu_uuid', 'used_memory']);
  assert.deepEqual(
    noHeader.map((app) => [app.pid, app.gpuUuid, app.usedMemoryMiB]),
    uuids.map((uuid) => [833, uuid, 2428]),
  );
  assert.equal(fixture('compute-apps-idle.csv'), '');
  assert.deepEqual(parseComputeAppsCsv(fixture('compute-apps-idle.csv')), []);
});

test('nvidia-smi -L', () => {
  assert.deepEqual(
    parseGpuList(fixture('list.txt')),
    uuids.map((uuid, index) => ({ index, name: 'NVIDIA H200', uuid })),
  );
  assert.deepEqual(parseGpuList('No devices were found\n'), []);
});

test('health: a process holding memory makes a GPU busy; uncorrected ECC errors make it unhealthy', () => {
  const gpus = parseGpuQueryCsv(fixture('query-gpu.csv'));
  const busy = assessGpus(gpus, parseComputeAppsCsv(fixture('compute-apps.csv')));
  assert.deepEqual(busy[2], {
    index: 2,
    uuid: uuids[2],
    status: 'busy',
    reasons: ['2428 MiB held by pid 833'],
    pids: [833],
  });
  assert.ok(busy.every((gpu) => gpu.status === 'busy'));

  // After the process exited: memory is back near zero and no process is listed.
  const idleGpus = gpus.map((gpu) => ({ ...gpu, memoryUsedMiB: 0 }));
  const idle = assessGpus(idleGpus, parseComputeAppsCsv(fixture('compute-apps-idle.csv')));
  assert.ok(idle.every((gpu) => gpu.status === 'healthy' && gpu.pids.length === 0 && gpu.reasons.length === 0));

  // Memory in use but no process visible (held from another container): busy all the same.
  const hidden = assessGpus(gpus, []);
  assert.equal(hidden[0]?.status, 'busy');
  assert.match(hidden[0]?.reasons[0] ?? '', /2437 MiB in use by a process not visible here/);

  const broken = assessGpus(
    idleGpus.map((gpu) => (gpu.index === 1 ? { ...gpu, eccUncorrectedVolatile: 3 } : gpu)),
    [],
  );
  assert.deepEqual(broken[1], {
    index: 1,
    uuid: uuids[1],
    status: 'unhealthy',
    reasons: ['3 uncorrected ECC errors'],
    pids: [],
  });
  assert.equal(broken[0]?.status, 'healthy');
});
