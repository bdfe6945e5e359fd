// Progress by the trainer's real phases: any line of work resets the hang clock (not only a new rollout), the phase
// follows slime's train loop (start-up with the eval before rollout 0, rollouts, saves, evals when due), and a gap in
// reading (a worker down, a retention or heal between two supervisions) never counts toward a hang.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { trainerPhase } from '../../activities/supervise.js';
import { cursorFor, LogProgress } from '../../src/progress/supervision-cursor.js';

const actor = '(MegatronTrainRayActor pid=7)';
const options = (now: number) => ({ resumeVerified: true, now, rewardsAfter: -1 });

test('every line of work resets the hang clock; an engine found unhealthy does not, its recovery does', () => {
  const progress = new LogProgress('job', undefined, options(0));
  let offset = 0;
  const feed = (line: string, now: number) => {
    offset += Buffer.byteLength(line) + 1;
    progress.push(`${line}\n`, offset, now);
  };
  feed(`${actor} successfully loaded checkpoint from /save at iteration 19`, 10);
  assert.equal(progress.lastProgressAt, 10, 'a loaded checkpoint is start-up work');
  feed(`${actor} eval 0: {'eval/aime': 0.5}`, 20);
  assert.equal(progress.lastProgressAt, 20, 'the eval before rollout 0');
  feed(`${actor} perf 20: {'perf/rollout_time': 3.0, 'rollout/raw_reward': 0.5}`, 30);
  feed(`${actor} step 20: {'train/loss': 0.1}`, 40);
  assert.equal(progress.lastProgressAt, 40, 'a train step within the same rollout');
  feed(`${actor} saving checkpoint at iteration      20 to /save in torch_dist format`, 50);
  feed(`${actor} successfully saved checkpoint from iteration      20 to /save`, 60);
  assert.equal(progress.lastProgressAt, 60);
  feed('(RolloutManager pid=8) Health check failed for rollout engine 3 (ray timeout or error). Killing actor.', 70);
  assert.equal(progress.lastProgressAt, 60, 'an unhealthy engine is not work');
  feed('(RolloutManager pid=8) Recovered 1 dead rollout engines (worker_type=regular)', 80);
  assert.equal(progress.lastProgressAt, 80, "the engine's restart inside the job is work");
  feed('some unrelated line', 90);
  assert.equal(progress.lastProgressAt, 80);
  const summary = progress.follower.summary;
  assert.equal(summary.engineFailures, 1);
  assert.equal(summary.enginesRecovered, 1);
});

test("the phase follows slime's train loop", () => {
  const base = { evals: {}, engineFailures: 0, enginesRecovered: 0, lines: 0 };
  assert.equal(trainerPhase(base, 20), 'startup', 'loading and the eval before rollout 0 are start-up');
  assert.equal(trainerPhase({ ...base, lastRollout: 0 }, 20), 'rollout');
  assert.equal(trainerPhase({ ...base, lastRollout: 19 }, 20), 'eval', 'rollout 19: an eval is due');
  assert.equal(trainerPhase({ ...base, lastRollout: 19, evals: { 19: { metrics: {} } } }, 20), 'rollout');
  assert.equal(
    trainerPhase({ ...base, lastRollout: 19, checkpointInProgress: { iteration: 19, dir: '/save' } }, 20),
    'save',
  );
});

test('a gap in reading does not count toward a hang: the clock resumes with the idle time it had', () => {
  const first = new LogProgress('job', undefined, options(1000));
  first.push(`${actor} perf 3: {'perf/step_time': 1.5}\n`, 40, 1000);
  first.push('', 40, 5000); // read again, nothing new: 4 s idle
  const cursor = cursorFor(JSON.parse(JSON.stringify(first.cursor())), 'job');
  assert.ok(cursor?.readAt, 'the cursor says when the log was last read');
  // Nobody reads the log for 10 minutes (the worker down); the next supervision starts from the cursor.
  const next = new LogProgress('job', cursor, options(605_000));
  assert.equal(605_000 - next.lastProgressAt, 4000, 'idle: the 4 s before the gap, not the gap');
  // Within one supervision: a read stalled for a minute.
  next.skipGap(605_000, 665_000);
  assert.equal(665_000 - next.lastProgressAt, 4000);
  // A cursor from before keel 0.4 (no readAt) keeps its clock as it was.
  const { readAt: _readAt, ...old } = cursor;
  const legacy = new LogProgress('job', old, options(605_000));
  assert.equal(legacy.lastProgressAt, 1000);
});
