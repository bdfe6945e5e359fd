// Gangs on the local executor with real processes: rendezvous env, all-or-nothing failure, whole-gang retry,
// re-attaching to a gang in flight, and abort.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import {
  GangMemberFailedError,
  LocalExecutor,
  gangMemberId,
  runGang,
  type GangMember,
  type GangProgress,
} from '../../src/exec/index.js';

let dir: string;
let executor: LocalExecutor;
const nodes = [0, 1, 2].map((i) => ({ host: 'localhost', name: `local-${i}` }));

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'keel-exec-gang-'));
  executor = new LocalExecutor({ stateDir: path.join(dir, 'state') });
});

after(async () => {
  // Every gang below ends stopped or exited; stop again in case an assertion failed midway.
  for (const id of ['g/ok', 'g/fail', 'g/retry', 'g/inflight', 'g/abort']) {
    for (let rank = 0; rank < 3; rank++) {
      await executor.stop(nodes[rank]!, gangMemberId(id, rank), { graceMs: 500 }).catch(() => undefined);
    }
  }
  await rm(dir, { recursive: true, force: true });
});

/** Each member appends "<rank> started" to a shared file, then runs `body` (sh). */
function members(body: (rank: number) => string): GangMember[] {
  const starts = path.join(dir, 'starts.log');
  return nodes.map((node, rank) => ({
    node,
    argv: ['sh', '-c', `echo "$NODE_RANK started" >> "$1"; ${body(rank)}`, 'sh', starts],
    env: { KEEL_MEMBER_NOTE: `note-${rank}` },
  }));
}

async function startCounts(): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  const text = await readFile(path.join(dir, 'starts.log'), 'utf8').catch(() => '');
  for (const line of text.split('\n').filter(Boolean)) counts.set(line, (counts.get(line) ?? 0) + 1);
  await rm(path.join(dir, 'starts.log'), { force: true });
  return counts;
}

test('every member gets the rendezvous env and the gang resolves when all exit 0', async () => {
  const events: GangProgress[] = [];
  const envDir = path.join(dir, 'env');
  // The members run until the test has seen two polls find them running (however slow the machine is).
  const release = path.join(dir, 'release-ok');
  const result = await runGang({
    executor,
    id: 'g/ok',
    members: members(() => `mkdir -p ${envDir}; env > ${envDir}/$NODE_RANK; ${untilExists(release)}`),
    masterAddr: '127.0.1.1',
    masterPort: 29500,
    pollMs: 100,
    onProgress: (event) => {
      events.push(event);
      if (events.filter((e) => e.type === 'running').length >= 2) writeFileSync(release, '');
    },
  });
  assert.equal(result.attempts, 1);
  assert.deepEqual(
    result.records.map((r) => r.id),
    [0, 1, 2].map((rank) => `g/ok/rank-${rank}`),
  );
  for (let rank = 0; rank < 3; rank++) {
    const env = await readFile(path.join(envDir, String(rank)), 'utf8');
    for (const line of ['MASTER_ADDR=127.0.1.1', 'MASTER_PORT=29500', `NODE_RANK=${rank}`, 'NNODES=3']) {
      assert.ok(env.split('\n').includes(line), `rank ${rank} lacks ${line}`);
    }
    assert.ok(env.includes(`KEEL_MEMBER_NOTE=note-${rank}`));
  }
  assert.equal(events.filter((e) => e.type === 'launched').length, 3);
  assert.equal(events.filter((e) => e.type === 'exited').length, 3);
  // a heartbeat source while the members run, not only on launch and exit
  assert.ok(events.filter((e) => e.type === 'running').length >= 2, 'running events while the members run');
  assert.deepEqual(await startCounts(), new Map(['0 started', '1 started', '2 started'].map((l) => [l, 1])));
});

test('a failing member stops the others and the error names it, its exit code and its last output', async () => {
  const failing = members((rank) => (rank === 1 ? 'sleep 0.3; echo "boom: bad shard 7"; exit 5' : 'exec sleep 60'));
  const error = await runGang({
    executor,
    id: 'g/fail',
    members: failing,
    masterAddr: '127.0.0.1',
    masterPort: 29501,
    pollMs: 100,
    graceMs: 2000,
  }).then(
    () => assert.fail('the gang should fail'),
    (e: unknown) => e,
  );
  assert.ok(error instanceof GangMemberFailedError, String(error));
  assert.equal(error.rank, 1);
  assert.equal(error.node, 'local-1');
  assert.equal(error.exitCode, 5);
  assert.match(error.logTail, /boom: bad shard 7/);
  assert.match(error.message, /rank 1 on local-1 exited with code 5/);
  for (const rank of [0, 2]) {
    const status = await executor.status(nodes[rank]!, gangMemberId('g/fail', rank));
    assert.equal(status?.state, 'exited', `rank ${rank} was stopped`);
    assert.equal(status?.exitCode, 128 + os.constants.signals.SIGTERM);
  }
  await startCounts();
});

test('with maxAttempts the gang is launched again as a whole', async () => {
  const marker = path.join(dir, 'rank2-failed-once');
  const succeeded = path.join(dir, 'rank2-succeeded');
  const events: GangProgress[] = [];
  const result = await runGang({
    executor,
    id: 'g/retry',
    members: members((rank) =>
      // (the others run until rank 2 has succeeded, so the first attempt's failure always finds them running)
      rank === 2
        ? `if [ ! -e ${marker} ]; then touch ${marker}; sleep 0.2; exit 9; fi; sleep 0.3; touch ${succeeded}`
        : untilExists(succeeded),
    ),
    masterAddr: '127.0.0.1',
    masterPort: 29502,
    pollMs: 100,
    graceMs: 2000,
    maxAttempts: 2,
    onProgress: (event) => events.push(event),
  });
  assert.equal(result.attempts, 2);
  const failed = events.find((e) => e.type === 'failed');
  assert.ok(failed?.type === 'failed' && failed.error.rank === 2 && failed.error.exitCode === 9);
  // Every member started twice: the healthy ones were stopped and relaunched with the failed one.
  assert.deepEqual(await startCounts(), new Map(['0 started', '1 started', '2 started'].map((l) => [l, 2])));
});

test('a second caller re-attaches to the gang in flight instead of launching it again', async () => {
  // The members run until the second caller has re-attached (however slow the machine is).
  const release = path.join(dir, 'release-inflight');
  const options = {
    executor,
    id: 'g/inflight',
    members: members(() => untilExists(release)),
    masterAddr: '127.0.0.1',
    masterPort: 29503,
    pollMs: 100,
  };
  const events: GangProgress[] = [];
  const first = runGang(options);
  await waitFor(async () => (await executor.status(nodes[2]!, gangMemberId('g/inflight', 2)))?.state === 'running');
  const second = await runGang({
    ...options,
    onProgress: (event) => {
      events.push(event);
      if (events.filter((e) => e.type === 'reattached').length === 3) writeFileSync(release, '');
    },
  });
  await first;
  assert.equal(second.attempts, 1);
  assert.deepEqual(
    events.filter((e) => e.type === 'reattached' || e.type === 'launched').map((e) => e.type),
    ['reattached', 'reattached', 'reattached'],
  );
  assert.deepEqual(await startCounts(), new Map(['0 started', '1 started', '2 started'].map((l) => [l, 1])));
});

test('aborting stops every member', async () => {
  const controller = new AbortController();
  const running = runGang({
    executor,
    id: 'g/abort',
    members: members(() => 'exec sleep 60'),
    masterAddr: '127.0.0.1',
    masterPort: 29504,
    pollMs: 100,
    graceMs: 2000,
    signal: controller.signal,
    onProgress: (event) => {
      if (event.type === 'launched' && event.rank === 2) controller.abort(new Error('cancelled by test'));
    },
  });
  await assert.rejects(running, /cancelled by test/);
  for (let rank = 0; rank < 3; rank++) {
    const status = await executor.status(nodes[rank]!, gangMemberId('g/abort', rank));
    assert.notEqual(status?.state, 'running', `rank ${rank} still running`);
  }
  await startCounts();
});

/** A shell loop that ends once `file` exists, or after 60 s (so a failed test never leaves a member behind). */
function untilExists(file: string): string {
  return `i=0; until [ -e ${file} ] || [ $i -ge 1200 ]; do sleep 0.05; i=$((i + 1)); done`;
}

async function waitFor(predicate: () => Promise<boolean>, limitMs = 20_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) assert.fail('condition not reached');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
