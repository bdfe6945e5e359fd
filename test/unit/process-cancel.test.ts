// Only a cancel request stops a launched program: runToEnd and runGangToEnd inside a (mock) activity, cancelled the
// way the Temporal worker cancels it -- worker shutdown, local heartbeat timeout, cancel request -- on real processes
// of the local executor; and a retried activity that finds its program ended while no worker watched.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ActivityCancellationDetails, ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { runGangToEnd, runToEnd } from '../../activities/process.js';
import { LocalExecutor, gangMemberId, type GangMember } from '../../src/exec/index.js';
import { programFailureTypes } from '../../src/failure-types.js';

let dir: string;
let executor: LocalExecutor;
const node = { host: 'localhost', name: 'local-0' };
const nodes = [0, 1].map((i) => ({ host: 'localhost', name: `local-${i}` }));
const ids: string[] = [];

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'keel-process-cancel-'));
  executor = new LocalExecutor({ stateDir: path.join(dir, 'state') });
});
after(async () => {
  for (const id of ids) {
    for (const n of nodes) await executor.stop(n, id, { graceMs: 200 }).catch(() => undefined);
  }
  await rm(dir, { recursive: true, force: true });
});

/** Reasons as the worker passes them (activity.cancel(reason, details)). */
const shutdown = ['WORKER_SHUTDOWN', new ActivityCancellationDetails({ workerShutdown: true })] as const;
const timedOut = ['TIMED_OUT', new ActivityCancellationDetails({ timedOut: true, notFound: true })] as const;
const requested = ['CANCELLED', new ActivityCancellationDetails({ cancelRequested: true })] as const;

/** A mock activity whose first schedule was `scheduledAt` (ms), cancelled with `reason` after its first heartbeat. */
function activity(
  reason?: readonly [string, ActivityCancellationDetails],
  scheduledAt = Date.now(),
): MockActivityEnvironment {
  const env = new MockActivityEnvironment({ scheduledTimestampMs: scheduledAt, attempt: 1 });
  if (reason) env.once('heartbeat', () => env.cancel(reason[0] as 'CANCELLED', reason[1]));
  return env;
}

const cancelled = (reason: string) => (error: unknown) => error instanceof CancelledFailure && error.message === reason;

const sleeper = (id: string) => {
  ids.push(id);
  return { executor, node, launch: { id, argv: ['sh', '-c', 'echo started >> "$0"; exec sleep 60', startsFile(id)] } };
};
const startsFile = (id: string) => path.join(dir, `${id.replaceAll('/', '_')}.starts`);
const starts = async (id: string) =>
  (await readFile(startsFile(id), 'utf8').catch(() => '')).split('\n').filter(Boolean).length;

for (const [name, reason] of [
  ['a worker shutting down', shutdown],
  ['a heartbeat timeout', timedOut],
] as const) {
  test(`runToEnd: ${name} leaves the program running, and the retry re-attaches to it`, async () => {
    const id = `p/${reason[0].toLowerCase()}`;
    await assert.rejects(
      activity(reason).run(() => runToEnd({ ...sleeper(id), pollMs: 50 })),
      cancelled(reason[0]),
    );
    const left = await executor.status(node, id);
    assert.equal(left?.state, 'running', 'the program outlives the activity');

    // The retry (a new attempt on another worker) re-attaches; a cancel request from the workflow stops it.
    const retry = activity(requested, Date.now() - 60_000);
    await assert.rejects(
      retry.run(() => runToEnd({ ...sleeper(id), pollMs: 50 })),
      cancelled('CANCELLED'),
    );
    const stopped = await executor.status(node, id);
    assert.equal(stopped?.pid, left.pid, 'the same process, not a second copy');
    assert.notEqual(stopped?.state, 'running', 'a cancel request stops it');
    assert.equal(await starts(id), 1, 'launched once');
  });
}

test('runToEnd: a retry finds the program it launched ended while no worker watched, and reports its exit code', async () => {
  const id = 'p/ended-unwatched';
  ids.push(id);
  const scheduledAt = Date.now() - 1000;
  const launch = { id, argv: ['sh', '-c', 'echo started >> "$0"; sleep 0.3; exit 3', startsFile(id)] };
  await assert.rejects(activity(shutdown, scheduledAt).run(() => runToEnd({ executor, node, launch, pollMs: 50 })));
  await new Promise((resolve) => setTimeout(resolve, 800));
  const result: Awaited<ReturnType<typeof runToEnd>> = await activity(undefined, scheduledAt).run(() =>
    runToEnd({ executor, node, launch, pollMs: 50 }),
  );
  assert.equal(result.exitCode, 3);
  assert.equal(result.launched, false);
  assert.equal(await starts(id), 1, 'not launched again');

  // A new pipeline attempt (a new activity, scheduled after that launch) launches it again.
  await activity(undefined, Date.now()).run(() => runToEnd({ executor, node, launch, pollMs: 50 }));
  assert.equal(await starts(id), 2);
});

function gang(id: string, body: string): Parameters<typeof runGangToEnd>[0] {
  ids.push(...nodes.map((_, rank) => gangMemberId(id, rank)));
  const members: GangMember[] = nodes.map((n, rank) => ({
    node: n,
    argv: ['sh', '-c', `echo started >> "$0"; ${body}`, startsFile(gangMemberId(id, rank))],
  }));
  return { executor, id, members, masterAddr: '127.0.0.1', masterPort: 29600, pollMs: 50, graceMs: 200 };
}

test('runGangToEnd: worker shutdown leaves the members running; the retry re-attaches and a cancel request stops them', async () => {
  const options = gang('g/shutdown', 'exec sleep 60');
  await assert.rejects(activity(shutdown).run(() => runGangToEnd(options)));
  const left = await Promise.all(nodes.map((n, rank) => executor.status(n, gangMemberId('g/shutdown', rank))));
  assert.deepEqual(
    left.map((s) => s?.state),
    ['running', 'running'],
  );
  await assert.rejects(activity(requested, Date.now() - 60_000).run(() => runGangToEnd(options)));
  for (const [rank, n] of nodes.entries()) {
    const status = await executor.status(n, gangMemberId('g/shutdown', rank));
    assert.equal(status?.pid, left[rank]?.pid, `rank ${rank}: the same process`);
    assert.notEqual(status?.state, 'running', `rank ${rank} stopped`);
    assert.equal(await starts(gangMemberId('g/shutdown', rank)), 1);
  }
});

test('runGangToEnd: a gang that ended while no worker watched is judged, not launched again', async () => {
  const scheduledAt = Date.now() - 1000;
  const ok = gang('g/done', 'sleep 0.3');
  await assert.rejects(activity(shutdown, scheduledAt).run(() => runGangToEnd(ok)));
  await new Promise((resolve) => setTimeout(resolve, 800));
  const result: Awaited<ReturnType<typeof runGangToEnd>> = await activity(undefined, scheduledAt).run(() =>
    runGangToEnd(ok),
  );
  assert.equal(result.records.length, 2);
  for (let rank = 0; rank < 2; rank++) assert.equal(await starts(gangMemberId('g/done', rank)), 1);

  const failing = gang('g/failed', 'sleep 0.3; exit "$((4 + NODE_RANK))"');
  await assert.rejects(activity(shutdown, scheduledAt).run(() => runGangToEnd(failing)));
  await new Promise((resolve) => setTimeout(resolve, 800));
  await assert.rejects(
    activity(undefined, scheduledAt).run(() => runGangToEnd(failing)),
    (error: unknown) =>
      error instanceof ApplicationFailure &&
      error.type === programFailureTypes.gangMemberFailed &&
      /exited with code 4/.test(error.message),
  );
  for (let rank = 0; rank < 2; rank++) assert.equal(await starts(gangMemberId('g/failed', rank)), 1);
});
