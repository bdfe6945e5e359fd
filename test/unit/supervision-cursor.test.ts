// The supervision cursor: a job log read in pieces, with the follower rebuilt from the cursor before every piece
// (a retried attempt, or the next supervision), ends in the same state as the log read whole; the cursor stays small.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cursorFor, LogProgress, type SupervisionCursor } from '../../src/progress/supervision-cursor.js';

function trainerLog(rollouts: number): string {
  const lines: string[] = ["(TinyTrainRayActor pid=7) eval 0: {'eval/toy': 0.25}"];
  for (let r = 0; r < rollouts; r++) {
    lines.push(`(TinyTrainRayActor pid=7) perf ${r}: {'perf/step_time': 1.5}`);
    lines.push(
      `(TinyTrainRayActor pid=7) rollout ${r}: {'rollout/raw_reward': ${(r % 7) / 8}, 'rollout/log_probs': -0.3}`,
    );
    if ((r + 1) % 5 === 0) {
      lines.push(
        `(TinyTrainRayActor pid=7) saving checkpoint at iteration ${String(r).padStart(7)} to /save in torch_dist format`,
      );
      lines.push(
        `(TinyTrainRayActor pid=7)   successfully saved checkpoint from iteration ${String(r).padStart(7)} to /save`,
      );
      lines.push(`(TinyTrainRayActor pid=7) eval ${r}: {'eval/toy': ${r / 100}}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

test('a log read in pieces through cursors ends where the log read whole ends', () => {
  const text = trainerLog(40) + "(TinyTrainRayActor pid=7) perf 40: {'perf/step_time'";
  const bytes = Buffer.from(text);
  const whole = new LogProgress('job-1', undefined, { resumeVerified: true, now: 0, rewardsAfter: -1 });
  whole.push(text, bytes.length, 1);

  let cursor: SupervisionCursor | undefined;
  const returned = { evals: new Map<number, number>(), rewards: new Map<number, number>() };
  // Cut at odd byte positions (inside lines); every piece is read by a progress rebuilt from the last cursor.
  for (let at = 0; at < bytes.length;) {
    const next = Math.min(bytes.length, at + 97 + (at % 13));
    const progress = new LogProgress('job-1', cursorFor(JSON.parse(JSON.stringify(cursor ?? null)), 'job-1'), {
      resumeVerified: true,
      now: 0,
      rewardsAfter: -1,
    });
    assert.equal(progress.offset, at);
    progress.push(bytes.subarray(at, next).toString('utf8'), next, 1);
    // Now and then the supervision returns (a checkpoint at its last rollout): what it returns is not carried on.
    const last = progress.follower.summary.lastRollout ?? -1;
    if (next % 3 === 0) {
      for (const e of progress.evals()) returned.evals.set(e.rollout, e.score);
      for (const r of progress.rewards()) returned.rewards.set(r.rollout, r.reward);
      cursor = progress.cursor(last);
      assert.ok(cursor.evals.every((e) => e.rollout > last) && cursor.rewards.every((r) => r.rollout > last));
    } else {
      cursor = progress.cursor();
    }
    assert.ok(JSON.stringify(cursor).length < 2000, `a cursor of ${JSON.stringify(cursor).length} characters`);
    at = next;
  }
  const final = new LogProgress('job-1', cursor, { resumeVerified: true, now: 0, rewardsAfter: -1 });
  for (const e of final.evals()) returned.evals.set(e.rollout, e.score);
  for (const r of final.rewards()) returned.rewards.set(r.rollout, r.reward);

  assert.equal(final.offset, bytes.length);
  assert.equal(final.follower.pending, whole.follower.pending);
  assert.equal(final.follower.pending, "(TinyTrainRayActor pid=7) perf 40: {'perf/step_time'");
  const { summary } = final.follower;
  assert.equal(summary.firstRollout, 0);
  assert.equal(summary.lastRollout, 39);
  assert.deepEqual(
    [...returned.evals].sort(([a], [b]) => a - b),
    whole.evals().map((e) => [e.rollout, e.score]),
  );
  assert.deepEqual(
    [...returned.rewards].sort(([a], [b]) => a - b),
    whole.rewards().map((r) => [r.rollout, r.reward]),
  );
  assert.equal(whole.rewards().length, 40);
});

test('the cursor carries a save in progress, the resume check and the progress times', () => {
  const progress = new LogProgress('job-2', undefined, { resumeVerified: false, now: 1000, rewardsAfter: -1 });
  progress.push(
    "perf 5: {'perf/step_time': 1.0}\nsaving checkpoint at iteration       5 to /save in torch_dist format\n",
    90,
    5000,
  );
  progress.resumeVerified = true;
  progress.push('', 90, 7000); // read again at 7 s: nothing new, 2 s idle
  const cursor = progress.cursor();
  assert.deepEqual(cursor.checkpointInProgress, { iteration: 5, dir: '/save' });
  assert.equal(cursor.resumeVerified, true);
  assert.equal(cursor.firstRollout, 5);
  assert.equal(cursor.lastProgressAt, new Date(5000).toISOString());
  const again = new LogProgress('job-2', cursor, { resumeVerified: false, now: 9000, rewardsAfter: -1 });
  assert.equal(again.resumeVerified, true);
  // The 2 s idle before the restart are kept; the 2 s nobody read the log are not counted (a gap in reading).
  assert.equal(9000 - again.lastProgressAt, 2000, 'no progress is invented by a restart, no idle time either');
  assert.deepEqual(again.follower.summary.checkpointInProgress, { iteration: 5, dir: '/save' });
  again.push('successfully saved checkpoint from iteration       5 to /save\n', 150, 9500);
  assert.equal(again.follower.summary.checkpointInProgress, undefined);
});

test('a cursor of another job, or not a cursor, is not used', () => {
  const cursor = new LogProgress('job-a', undefined, { resumeVerified: true, now: 0, rewardsAfter: -1 }).cursor();
  assert.equal(cursorFor(cursor, 'job-b'), undefined);
  assert.deepEqual(cursorFor(cursor, 'job-a'), cursor);
  const problems: string[] = [];
  assert.equal(
    cursorFor({ ...cursor, offset: -4 }, 'job-a', (p) => problems.push(p)),
    undefined,
  );
  assert.match(problems[0] ?? '', /^offset: /);
});
