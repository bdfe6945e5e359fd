import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  cleanLogLine,
  parseSlimeLogLine,
  primaryEvalKey,
  SlimeLogFollower,
  type SlimeLogEvent,
} from '../../src/progress/slime-log.js';

const esc = '\x1b';
const trainer = '(MegatronTrainRayActor pid=48213, ip=10.0.3.17)';
const rolloutManager = `${esc}[36m(RolloutManager pid=47120)${esc}[0m`;

test('Ray prefix, colour codes and dedup suffix are removed and the source kept', () => {
  assert.deepEqual(cleanLogLine(`${esc}[36m${trainer}${esc}[0m hello [repeated 7x across cluster]`), {
    text: 'hello',
    source: { actor: 'MegatronTrainRayActor', pid: 48213, ip: '10.0.3.17' },
  });
  assert.deepEqual(cleanLogLine('(pid=77) bare task line\r'), { text: 'bare task line', source: { pid: 77 } });
  assert.deepEqual(cleanLogLine('plain'), { text: 'plain' });
});

test('perf, rollout and step lines carry their id and numeric metrics (nan included)', () => {
  const perf = parseSlimeLogLine(
    `${rolloutManager} perf 19: {'rollout/response_len/mean': 2210.4, 'perf/rollout_time': 181.52, 'perf/tokens_per_gpu_per_sec': nan, 'rollout/truncated': False}`,
  );
  assert.equal(perf?.type, 'rollout-done');
  assert.ok(perf?.type === 'rollout-done');
  assert.equal(perf.rollout, 19);
  assert.equal(perf.metrics['perf/rollout_time'], 181.52);
  assert.ok(Number.isNaN(perf.metrics['perf/tokens_per_gpu_per_sec']));
  assert.equal(perf.metrics['rollout/truncated'], 0);
  assert.deepEqual(perf.source, { actor: 'RolloutManager', pid: 47120 });

  const trainerPerf = parseSlimeLogLine(
    `${trainer} perf 19: {'perf/train_wait_time': 3.2, 'perf/train_time': 40.1, 'perf/step_time': 43.3, 'perf/wait_time_ratio': 0.0739}`,
  );
  assert.ok(trainerPerf?.type === 'train-perf');
  assert.equal(trainerPerf.rollout, 19);
  assert.equal(trainerPerf.metrics['perf/step_time'], 43.3);

  const stats = parseSlimeLogLine(
    `${trainer} [2025-06-01 10:00:03] rollout.py:88 - rollout 20: {'rollout/raw_reward': 0.40625, 'rollout/log_probs': -0.3121, 'rollout/advantages': 0.0}`,
  );
  assert.deepEqual(stats && { type: stats.type, ...('rollout' in stats ? { rollout: stats.rollout } : {}) }, {
    type: 'rollout-stats',
    rollout: 20,
  });

  const step = parseSlimeLogLine(
    `${trainer} step 83: {'train/loss': np.float64(-0.0012), 'train/grad_norm': 0.231, 'train/lr-pg_0': 1e-06, 'train/kl_loss': inf}`,
  );
  assert.deepEqual(step, {
    type: 'train-step',
    step: 83,
    metrics: { 'train/loss': -0.0012, 'train/grad_norm': 0.231, 'train/lr-pg_0': 1e-6, 'train/kl_loss': Infinity },
    source: { actor: 'MegatronTrainRayActor', pid: 48213, ip: '10.0.3.17' },
  });
});

test('Megatron checkpoint lines: saving, saved (with and without rank suffix), loaded', () => {
  assert.deepEqual(
    parseSlimeLogLine(`${trainer} saving checkpoint at iteration      19 to /mnt/shared/r1/ckpt in torch_dist format`),
    {
      type: 'checkpoint-saving',
      iteration: 19,
      dir: '/mnt/shared/r1/ckpt',
      format: 'torch_dist',
      source: { actor: 'MegatronTrainRayActor', pid: 48213, ip: '10.0.3.17' },
    },
  );
  const saved = parseSlimeLogLine(
    `${trainer}   successfully saved checkpoint from iteration      39 to /mnt/shared/r1/ckpt`,
  );
  assert.ok(saved?.type === 'checkpoint-saved');
  assert.deepEqual([saved.iteration, saved.dir], [39, '/mnt/shared/r1/ckpt']);
  const savedRanks = parseSlimeLogLine(
    '  successfully saved checkpoint from iteration    2999 to /ckpt dir/x [ t 1/8, p 1/8 ]',
  );
  assert.ok(savedRanks?.type === 'checkpoint-saved');
  assert.deepEqual([savedRanks.iteration, savedRanks.dir], [2999, '/ckpt dir/x']);
  const loaded = parseSlimeLogLine(
    `${trainer}  successfully loaded checkpoint from /mnt/shared/r1/ckpt [ t 1/1, p 1/8 ] at iteration 39`,
  );
  assert.ok(loaded?.type === 'checkpoint-loaded');
  assert.deepEqual([loaded.iteration, loaded.dir], [39, '/mnt/shared/r1/ckpt']);
});

test('eval lines give the metrics and the primary score', () => {
  const event = parseSlimeLogLine(
    `${rolloutManager} eval 39: {'eval/aime': 0.5625, 'eval/aime-truncated_ratio': 0.03125, 'eval/aime/response_len/mean': 9120.2}`,
  );
  assert.ok(event?.type === 'eval');
  assert.equal(event.rollout, 39);
  assert.equal(event.score, 0.5625);
  assert.equal(event.scoreKey, 'eval/aime');
  assert.equal(event.metrics['eval/aime-truncated_ratio'], 0.03125);
  const chosen = parseSlimeLogLine("eval 59: {'eval/aime': 0.5, 'eval/gpqa': 0.25}", { evalScoreKey: 'eval/gpqa' });
  assert.ok(chosen?.type === 'eval');
  assert.equal(chosen.score, 0.25);
  assert.equal(primaryEvalKey(['eval/aime-truncated_ratio', 'eval/aime', 'eval/gpqa']), 'eval/aime');
  assert.equal(primaryEvalKey(['perf/x']), undefined);
});

test('engine health, placement group waiting and traceback errors', () => {
  assert.deepEqual(
    parseSlimeLogLine(
      '(RolloutManager pid=9) Health check failed for rollout engine 3 (timeout after 30s). Killing actor.',
    ),
    {
      type: 'engine-unhealthy',
      engine: 3,
      message: 'Health check failed for rollout engine 3 (timeout after 30s). Killing actor.',
      source: { actor: 'RolloutManager', pid: 9 },
    },
  );
  assert.deepEqual(parseSlimeLogLine('Recovered 2 dead rollout engines'), { type: 'engines-recovered', count: 2 });
  assert.deepEqual(
    parseSlimeLogLine(
      'Waiting for placement group of 128 GPUs (elapsed 630.2s): 120.0 GPUs registered with Ray, 120.0 available.',
    ),
    {
      type: 'placement-group-waiting',
      gpusNeeded: 128,
      elapsedSeconds: 630.2,
      gpusRegistered: 120,
      gpusAvailable: 120,
    },
  );
  const config = parseSlimeLogLine(
    `${trainer} ValueError: --rollout-batch-size 32 * --n-samples-per-prompt 16 must be divisible by --global-batch-size 100`,
  );
  assert.ok(config?.type === 'error');
  assert.equal(config.errorType, 'ValueError');
  assert.match(config.message, /must be divisible by --global-batch-size 100$/);
  const wrapped = parseSlimeLogLine(
    'ray.exceptions.RayTaskError(AssertionError): ray::MegatronTrainRayActor.init() (pid=1, ip=10.0.0.2)',
  );
  assert.ok(wrapped?.type === 'error');
  assert.equal(wrapped.errorType, 'ray.exceptions.RayTaskError(AssertionError)');
  const oom = parseSlimeLogLine('torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB');
  assert.ok(oom?.type === 'error' && oom.errorType === 'torch.OutOfMemoryError');
  assert.deepEqual(parseSlimeLogLine('KeyboardInterrupt'), {
    type: 'error',
    errorType: 'KeyboardInterrupt',
    message: '',
    line: 'KeyboardInterrupt',
  });
});

test('lines that are not events, and malformed dicts, give nothing', () => {
  for (const line of [
    '',
    `${trainer}     raise ValueError("bad")`,
    '  File "/root/slime/train.py", line 12, in <module>',
    'Traceback (most recent call last):',
    "perf 3: {'a': 1",
    'INFO: ValueError handling is fine here',
    '[2025-06-01 10:00:00] Error rate: low',
    'step 3: not a dict',
  ]) {
    assert.equal(parseSlimeLogLine(line), undefined, line);
  }
});

const jobOutput = [
  '2025-06-01 10:00:00,123\tINFO job_manager.py:531 -- Runtime env is setting up.',
  `${trainer}  successfully loaded checkpoint from /ckpt [ t 1/1, p 1/1 ] at iteration 39`,
  `${rolloutManager} perf 40: {'perf/rollout_time': 90.5, 'rollout/response_len/mean': 1800.0}`,
  `${trainer} rollout 40: {'rollout/raw_reward': 0.5}`,
  `${trainer} step 160: {'train/loss': 0.01, 'train/grad_norm': nan}`,
  '(RolloutManager pid=9) Health check failed for rollout engine 1 ... Killing actor.',
  '(RolloutManager pid=9) Recovered 1 dead rollout engines',
  `${rolloutManager} perf 59: {'perf/rollout_time': 88.0}`,
  `${rolloutManager} eval 59: {'eval/aime': 0.59375, 'eval/aime-truncated_ratio': 0.0}`,
  `${trainer} saving checkpoint at iteration      59 to /ckpt in torch_dist format`,
  `${trainer}   successfully saved checkpoint from iteration      59 to /ckpt [ t 1/1, p 1/1 ]`,
  `${trainer} saving checkpoint at iteration      79 to /ckpt in torch_dist format`,
  'Traceback (most recent call last):',
  '  File "/root/slime/train.py", line 90, in <module>',
  'RuntimeError: NCCL communicator was aborted on rank 17.',
].join('\n');

test('the follower gives the same events whatever the chunking, and keeps a summary', () => {
  const whole = new SlimeLogFollower();
  const expected = [...whole.push(`${jobOutput}\n`), ...whole.end()];
  assert.deepEqual(
    expected.map((event) => event.type),
    [
      'checkpoint-loaded',
      'rollout-done',
      'rollout-stats',
      'train-step',
      'engine-unhealthy',
      'engines-recovered',
      'rollout-done',
      'eval',
      'checkpoint-saving',
      'checkpoint-saved',
      'checkpoint-saving',
      'error',
    ],
  );
  const bytes = new TextEncoder().encode(jobOutput.replace(/\n/g, '\r\n') + '\r\nnot an event — ünïcode tail');
  for (const size of [1, 2, 7, 64, 333]) {
    const seen: SlimeLogEvent[] = [];
    const follower = new SlimeLogFollower({ onEvent: (event) => seen.push(event) });
    const returned: SlimeLogEvent[] = [];
    for (let at = 0; at < bytes.length; at += size) returned.push(...follower.push(bytes.subarray(at, at + size)));
    returned.push(...follower.end());
    assert.deepEqual(returned, expected, `chunk size ${size}`);
    assert.deepEqual(seen, expected);
    assert.equal(follower.summary.lines, 16);
  }
  const summary = whole.summary;
  assert.equal(summary.firstRollout, 40);
  assert.equal(summary.lastRollout, 59);
  assert.equal(summary.lastTrainStep, 160);
  assert.deepEqual(summary.lastCheckpointLoaded, { iteration: 39, dir: '/ckpt' });
  assert.deepEqual(summary.lastCheckpointSaved, { iteration: 59, dir: '/ckpt' });
  assert.deepEqual(summary.checkpointInProgress, { iteration: 79, dir: '/ckpt' });
  assert.deepEqual(Object.keys(summary.evals), ['59']);
  assert.equal(summary.evals[59]?.score, 0.59375);
  assert.equal(summary.engineFailures, 1);
  assert.equal(summary.enginesRecovered, 1);
  assert.deepEqual(summary.lastError, {
    errorType: 'RuntimeError',
    message: 'NCCL communicator was aborted on rank 17.',
    line: 'RuntimeError: NCCL communicator was aborted on rank 17.',
  });
  assert.deepEqual(JSON.parse(JSON.stringify(summary)).evals['59'].score, 0.59375);
});

test('the follower reports GPU waiting until a rollout starts, and ends a line without a newline', () => {
  const follower = new SlimeLogFollower();
  follower.push('Waiting for placement group of 16 GPUs (elapsed 30.0s): 8 GPUs registered with Ray, 8 available.\n');
  assert.deepEqual(follower.summary.waitingForGpus, {
    gpusNeeded: 16,
    gpusRegistered: 8,
    gpusAvailable: 8,
    elapsedSeconds: 30,
  });
  assert.deepEqual(follower.push("perf 0: {'perf/rollout_time': 1.0}"), []);
  assert.equal(follower.end()[0]?.type, 'rollout-done');
  assert.equal(follower.summary.waitingForGpus, undefined);
  assert.equal(follower.summary.firstRollout, 0);
});

test('a follower continues from an earlier summary', () => {
  const first = new SlimeLogFollower();
  first.push("perf 40: {'perf/rollout_time': 1.0}\neval 59: {'eval/aime': 0.5}\n");
  const saved = JSON.parse(JSON.stringify(first.summary)) as typeof first.summary;
  const next = new SlimeLogFollower({ summary: saved });
  next.push("perf 60: {'perf/rollout_time': 1.0}\n");
  assert.equal(next.summary.firstRollout, 40);
  assert.equal(next.summary.lastRollout, 60);
  assert.equal(next.summary.evals[59]?.score, 0.5);
  assert.equal(next.summary.lines, 3);
  assert.equal(saved.lastRollout, 40);
});
