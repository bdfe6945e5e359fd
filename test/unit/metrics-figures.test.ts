// The per-run figures the worker's metrics expose, from a training's recorded state, its supervision's heartbeat and
// its node pool; and their Prometheus series (a run that ended leaves none behind).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  secondsLost,
  trainingFigures,
  type TrainingSample,
  type TrainingStatusSample,
} from '../../src/metrics/training-figures.js';
import { KeelMetrics } from '../../src/metrics/registry.js';
import { parseExposition, sampleValue } from '../support/prometheus.js';

const t0 = Date.parse('2026-11-30T00:00:00.000Z');
const at = (s: number): string => new Date(t0 + s * 1000).toISOString();

function status(overrides: Partial<TrainingStatusSample> = {}): TrainingStatusSample {
  return {
    phase: 'running',
    jobId: 'job-2',
    submissions: 2,
    restarts: 1,
    lastRollout: 7,
    numRollout: 100,
    saveInterval: 5,
    checkpoints: [],
    evals: [],
    failures: [],
    ...overrides,
  };
}

describe('seconds lost to failures', () => {
  it('a recovered failure costs from the last progress before it to the first rollout after it', () => {
    const s = status({
      failures: [
        {
          at: at(110),
          kind: 'job-crashed',
          message: 'm',
          lastProgressAt: at(100),
          detectedAt: at(105),
          recoveredAt: at(160),
        },
      ],
    });
    assert.equal(secondsLost(s, undefined, t0 + 1000_000), 60);
  });

  it('falls back to the detection time, then the recorded time, when no progress time was recorded', () => {
    const s = status({
      failures: [
        { at: at(110), kind: 'hang', message: 'm', detectedAt: at(105), recoveredAt: at(125) },
        { at: at(200), kind: 'job-crashed', message: 'm', recoveredAt: at(230) },
      ],
    });
    assert.equal(secondsLost(s, undefined, t0), 20 + 30);
  });

  it('failures before any rollout (a crash loop) are one outage, until the first rollout after the last', () => {
    const s = status({
      failures: [
        { at: at(110), kind: 'job-crashed', message: 'm', lastProgressAt: at(100) },
        { at: at(150), kind: 'job-crashed', message: 'm', lastProgressAt: at(140) },
        { at: at(190), kind: 'job-crashed', message: 'm', lastProgressAt: at(180), recoveredAt: at(300) },
      ],
    });
    assert.equal(secondsLost(s, undefined, t0 + 1000_000), 200);
  });

  it('an open outage counts until now, or until the current job logged its first rollout', () => {
    const s = status({ failures: [{ at: at(110), kind: 'node-lost', message: 'm', lastProgressAt: at(100) }] });
    assert.equal(secondsLost(s, undefined, t0 + 400_000), 300);
    assert.equal(secondsLost(s, { jobId: 'job-2', firstRolloutAt: at(250) }, t0 + 400_000), 150);
    // a first rollout from before the outage (a stale cursor) does not end it
    assert.equal(secondsLost(s, { jobId: 'job-2', firstRolloutAt: at(50) }, t0 + 400_000), 300);
  });
});

describe('training figures', () => {
  const sample = (overrides: Partial<TrainingSample> = {}): TrainingSample => ({
    status: status({
      checkpoints: [
        { iteration: 4, at: at(100) },
        { iteration: 9, at: at(160) },
        { iteration: 14, at: at(230) },
        { iteration: 19, at: at(300), evalScore: 0.5 },
      ],
      evals: [
        { rollout: 14, score: 0.25 },
        { rollout: 19, score: 0.5 },
      ],
      lastRollout: 19,
      failures: [
        {
          at: at(20),
          kind: 'job-crashed',
          message: 'm',
          lastRollout: 3,
          tracker: -1,
          lastProgressAt: at(10),
          recoveredAt: at(40),
        },
        {
          at: at(250),
          kind: 'node-lost',
          message: 'm',
          lastRollout: 17,
          tracker: 14,
          lastProgressAt: at(245),
          detectedAt: at(247),
          jobRunningAt: at(265),
          recoveredAt: at(280),
        },
      ],
      activeNodes: ['n1', 'n2', 'n5', 'n4'],
      quarantined: ['n3'],
      extraNodes: [{ host: '10.0.0.7', name: 'n7' }],
    }),
    pool: { names: ['n1', 'n2', 'n3', 'n4', 'n5', 'n6'], initial: ['n1', 'n2', 'n3', 'n4'] },
    startedAt: new Date(t0),
    ...overrides,
  });

  it('reads the checkpoint, its age, the eval, restarts, losses and nodes', () => {
    const f = trainingFigures(sample(), t0 + 312_000);
    assert.equal(f.lastCheckpoint, 19);
    assert.equal(f.lastCheckpointAgeSeconds, 12);
    assert.equal(f.checkpointIntervalSeconds, 70); // gaps 60, 70, 70
    assert.equal(f.lastEvalScore, 0.5);
    assert.equal(f.lastEvalRollout, 19);
    assert.equal(f.restarts, 1);
    assert.deepEqual(f.failuresByKind, { 'job-crashed': 1, 'node-lost': 1 });
    assert.equal(f.secondsLost, 30 + 35);
    assert.equal(f.rolloutsLost, 4 + 3);
    // as keel status accounts them: the second restart recorded its timeline, the first (keel 0.2) only its ends;
    // the healthy pace is the median of the checkpoint intervals no failure fell into (12 and 14 s per rollout)
    assert.deepEqual(f.recoverySeconds, { detection: 2, keel: 18, trainer_startup: 15 });
    assert.equal(f.redoSeconds, 7 * 13);
    // n3 quarantined; n1 n2 n5 n4 in the cluster; n6 (a spare of the spec) and n7 (added by an operator) spare
    assert.deepEqual(f.nodes, { healthy: 4, quarantined: 1, spare: 2 });
    assert.equal(f.rollout, 19);
    assert.equal(f.lastProgressAgeSeconds, undefined);
  });

  it("takes the rollout and the progress age from the current job's heartbeat, never going back", () => {
    const live = { jobId: 'job-2', lastRollout: 22, lastProgressAt: at(305) };
    const f = trainingFigures(sample({ live }), t0 + 312_000);
    assert.equal(f.rollout, 22);
    assert.equal(f.lastProgressAgeSeconds, 7);
    // a resumed job redoing rollouts below the recorded one
    assert.equal(trainingFigures(sample({ live: { ...live, lastRollout: 16 } }), t0 + 312_000).rollout, 19);
    // another job's cursor (the one before a resubmission) is not read
    const stale = trainingFigures(sample({ live: { ...live, jobId: 'job-1' } }), t0 + 312_000);
    assert.equal(stale.rollout, 19);
    assert.equal(stale.lastProgressAgeSeconds, undefined);
  });

  it('before any checkpoint or heal: the age runs from the start, the layout nodes are the healthy ones', () => {
    const f = trainingFigures(
      sample({
        status: status({ lastRollout: undefined }),
        pool: { names: ['n1', 'n2', 'n3', 'n4', 'n5'], initial: ['n1', 'n2', 'n3', 'n4'] },
      }),
      t0 + 45_000,
    );
    assert.equal(f.lastCheckpoint, undefined);
    assert.equal(f.lastCheckpointAgeSeconds, 45);
    assert.equal(f.checkpointIntervalSeconds, undefined);
    assert.equal(f.rollout, undefined);
    assert.deepEqual(f.nodes, { healthy: 4, quarantined: 0, spare: 1 });
    assert.equal(trainingFigures(sample({ pool: undefined }), t0).nodes, undefined);
  });
});

describe('the Prometheus series', () => {
  it('one series per run and figure; a run no longer running leaves none', async () => {
    const metrics = new KeelMetrics();
    const f = trainingFigures(
      {
        status: status({ checkpoints: [{ iteration: 4, at: at(0) }], evals: [{ rollout: 4, score: 0.375 }] }),
        pool: { names: ['a', 'b'], initial: ['a'] },
        startedAt: new Date(t0),
      },
      t0 + 9000,
    );
    metrics.update({
      pipelines: [{ run: 'keel-x', phase: 'running', preset: 'tiny-local' }],
      trainings: [
        { run: 'keel-x', workflowId: 'keel-x-training', figures: f },
        { run: 'keel-y', workflowId: 'keel-y-training', error: 'no answer' },
      ],
      truncated: false,
      seconds: 0.25,
    });
    const samples = parseExposition(await metrics.registry.metrics());
    const x = (name: string, labels: Record<string, string> = {}) =>
      sampleValue(samples, name, { run: 'keel-x', ...labels });
    assert.equal(x('keel_run_info', { preset: 'tiny-local' }), 1);
    assert.equal(x('keel_run_phase', { phase: 'running' }), 1);
    assert.equal(x('keel_training_phase', { phase: 'running' }), 1);
    assert.equal(x('keel_training_status_up'), 1);
    assert.equal(x('keel_training_rollout'), 7);
    assert.equal(x('keel_training_last_checkpoint_rollout'), 4);
    assert.equal(x('keel_training_last_checkpoint_age_seconds'), 9);
    assert.equal(x('keel_training_last_eval_score'), 0.375);
    assert.equal(x('keel_training_restarts_total'), 1);
    assert.equal(x('keel_training_nodes', { state: 'spare' }), 1);
    assert.equal(x('keel_training_recovery_seconds_total', { part: 'trainer_startup' }), 0);
    assert.equal(x('keel_training_redo_seconds'), undefined, 'no pace yet: one checkpoint');
    assert.equal(sampleValue(samples, 'keel_training_status_up', { run: 'keel-y' }), 0);
    assert.equal(sampleValue(samples, 'keel_training_rollout', { run: 'keel-y' }), undefined);
    assert.equal(sampleValue(samples, 'keel_metrics_runs', { type: 'training' }), 2);
    assert.ok(sampleValue(samples, 'process_cpu_user_seconds_total') !== undefined, "the worker process's own metrics");

    metrics.update({ pipelines: [], trainings: [], truncated: true, seconds: 0.1 });
    const after = parseExposition(await metrics.registry.metrics());
    assert.equal(after.filter((s) => s.labels.run !== undefined).length, 0);
    assert.equal(sampleValue(after, 'keel_metrics_runs_truncated'), 1);
  });
});
