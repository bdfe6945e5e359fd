// The Slurm allocation's pure parts: the holder job's sbatch argv, squeue and scontrol parsing, and a spec placed on
// the nodes Slurm allocated.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  holderSbatchArgv,
  nodeLost,
  parseNodes,
  parseSqueue,
  timeLeftMs,
  stepArgv,
  timeLimitMinutes,
} from '../../src/cluster/slurm.js';
import { placeOnAllocation } from '../../src/spec/slurm-allocation.js';
import { resolveSpecOrThrow } from '../../src/spec/index.js';

const spec = resolveSpecOrThrow({
  preset: 'tiny-local',
  overrides: {
    cluster: {
      executor: {
        kind: 'slurm',
        partition: 'gpu',
        account: 'rl',
        qos: 'high',
        timeLimit: '90m',
        constraint: 'h100',
        extraArgs: ['--reservation=r1'],
      },
    },
  },
});

describe('the Slurm allocation', () => {
  it('the holder job: every node and spare, one task each, the executor fields, and a script that only waits', () => {
    assert.equal(spec.cluster.executor.kind, 'slurm');
    if (spec.cluster.executor.kind !== 'slurm') return;
    const argv = holderSbatchArgv({ executor: spec.cluster.executor, runKey: 'run-1', nodes: 5, gpusPerNode: 2 });
    assert.deepEqual(argv, [
      'sbatch',
      '--parsable',
      '--job-name=keel-run-1',
      '--nodes=5',
      '--ntasks-per-node=1',
      '--gres=gpu:2',
      '--exclusive',
      '--partition=gpu',
      '--account=rl',
      '--qos=high',
      '--time=90',
      '--constraint=h100',
      '--no-kill',
      '--no-requeue',
      '--output=/dev/null',
      '--reservation=r1',
      '--wrap=exec sleep infinity',
    ]);
    assert.equal(timeLimitMinutes('61s'), 2, 'whole minutes, rounded up');
    // a new allocation of the run, without the nodes lost under the one before
    const without = holderSbatchArgv({
      executor: spec.cluster.executor,
      runKey: 'run-1',
      nodes: 5,
      gpusPerNode: 2,
      exclude: ['n2', 'n5'],
    });
    assert.ok(
      without.includes('--exclude=n2,n5') && without.at(-1) === '--wrap=exec sleep infinity',
      without.join(' '),
    );
    assert.deepEqual(stepArgv('12', 'n3'), [
      ...['srun', '--overlap', '--jobid=12', '--nodes=1', '--ntasks=1', '--nodelist=n3', '--quiet'],
    ]);
  });

  it("reads squeue's time left (%L) in ms, and nothing for a job without a limit", () => {
    assert.equal(timeLeftMs('59:58'), (59 * 60 + 58) * 1000);
    assert.equal(timeLeftMs('1:00:05'), 3605_000);
    assert.equal(timeLeftMs('2-00:00:01'), (48 * 3600 + 1) * 1000);
    assert.equal(timeLeftMs('0:00'), 0);
    for (const none of ['UNLIMITED', 'NOT_SET', 'INVALID', '', undefined]) assert.equal(timeLeftMs(none), undefined);
  });

  it('parses squeue lines and scontrol node records (the address is NodeAddr)', () => {
    assert.deepEqual(parseSqueue('7|keel-run-1|PENDING|Resources||2026-12-07T01:00:00\n'), [
      {
        jobId: '7',
        name: 'keel-run-1',
        state: 'PENDING',
        reason: 'Resources',
        nodeList: '',
        submitTime: '2026-12-07T01:00:00',
      },
    ]);
    assert.equal(
      parseSqueue('8|keel-run-2|RUNNING|None|n[1-5]|2026-12-07T01:00:00|1-02:03:04\n')[0]!.timeLeft,
      '1-02:03:04',
    );
    const nodes = parseNodes(
      'NodeName=n3 Arch=x86_64 CoresPerSocket=1 Gres=gpu:2 NodeAddr=127.0.1.3 NodeHostName=n3 Port=17003 State=MIXED ThreadsPerCore=1\n' +
        'NodeName=gpu-07 NodeAddr=10.0.0.7 State=DOWN* Reason=Not responding [slurm@2026-12-07T04:42:01]\n' +
        'NodeName=gpu-08 NodeAddr=10.0.0.8 State=MIXED+DRAIN Reason=ECC errors\n' +
        // Slurm 22.05's scontrol writes the not-responding flag out
        'NodeName=n2 NodeAddr=127.0.1.2 State=DOWN+NOT_RESPONDING Reason=Not responding [slurm@2026-12-07T12:37:03]\n' +
        'NodeName=n4 NodeAddr=127.0.1.4 State=MIXED+DRAIN+NOT_RESPONDING\n',
    );
    assert.deepEqual(nodes, [
      { name: 'n3', address: '127.0.1.3', state: 'MIXED' },
      { name: 'gpu-07', address: '10.0.0.7', state: 'DOWN*', reason: 'Not responding' },
      { name: 'gpu-08', address: '10.0.0.8', state: 'MIXED+DRAIN', reason: 'ECC errors' },
      { name: 'n2', address: '127.0.1.2', state: 'DOWN*', reason: 'Not responding' },
      { name: 'n4', address: '127.0.1.4', state: 'MIXED*+DRAIN' },
    ]);
    assert.equal(parseNodes('NodeName=n1 State=ALLOCATED+NOT_RESPONDING\n')[0]?.state, 'ALLOCATED*');
  });

  it("reads a node lost to the job from Slurm's state: DOWN, drained or failed, not a node that is only slow", () => {
    for (const state of [
      'DOWN*',
      'DOWN',
      'ALLOCATED+DRAIN',
      'IDLE+DRAIN',
      'MIXED+DRAINING',
      'DRAINED',
      'FAIL',
      'down*',
    ])
      assert.equal(nodeLost(state), true, state);
    for (const state of ['ALLOCATED', 'ALLOCATED*', 'MIXED', 'IDLE', 'COMPLETING', 'IDLE+POWERED_DOWN', ''])
      assert.equal(nodeLost(state), false, state);
  });

  it("places the spec's slots on the allocated nodes, in Slurm's order, and names the job for the executor", () => {
    const placed = placeOnAllocation(spec, {
      jobId: '42',
      nodes: [1, 2, 3, 4, 5].map((i) => ({ name: `gpu-${i}`, address: `10.0.0.${i}` })),
    });
    assert.deepEqual(
      placed.cluster.nodes.map((n) => [n.name, n.host, n.gpus]),
      [1, 2, 3, 4].map((i) => [`gpu-${i}`, `10.0.0.${i}`, 2]),
    );
    assert.deepEqual(
      placed.cluster.spares.map((n) => n.name),
      ['gpu-5'],
    );
    assert.ok(placed.cluster.executor.kind === 'slurm' && placed.cluster.executor.jobId === '42');
    assert.throws(
      () => placeOnAllocation(spec, { jobId: '43', nodes: [{ name: 'gpu-1', address: '10.0.0.1' }] }),
      /job 43 has 1 nodes, the spec 5/,
    );
  });
});
