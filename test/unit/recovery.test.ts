// Recovery accounting from a training's failure records: each restart's detection, keel's share, the trainer's
// start-up and the rollouts lost, and the run's totals. The figures below are worked by hand from the timestamps.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { TrainingStatus } from '../../workflows/definitions.js';
import {
  formatRestart,
  formatTotals,
  healthyPace,
  outageSeconds,
  recoveryTotals,
  restartAccounts,
} from '../../src/progress/recovery.js';
import { markLabel, reportData } from '../../src/report/chart.js';
import { renderReport } from '../../src/report/render.js';
import { formatStatus } from '../../src/cli/commands/run.js';
import { drawn } from '../support/report.js';

const t0 = Date.parse('2026-11-29T00:00:00Z');
const at = (seconds: number) => new Date(t0 + seconds * 1000).toISOString();

// 10 s per rollout: checkpoints every 10 rollouts at 100 s, 200 s; a crash after rollout 24 (seen at 250 s, classified
// at 251 s), Ray kept, the job running at 256 s and training again at 286 s; checkpoint 29 at 336 s, 39 at 436 s.
const training: Pick<TrainingStatus, 'failures' | 'checkpoints'> = {
  checkpoints: [
    { iteration: 9, at: at(100) },
    { iteration: 19, at: at(200) },
    { iteration: 29, at: at(336) },
    { iteration: 39, at: at(436) },
  ],
  failures: [
    {
      at: at(251),
      kind: 'job-crashed',
      message: 'job failed (exit 1)',
      lastRollout: 24,
      tracker: 19,
      lastProgressAt: at(250),
      detectedAt: at(251),
      healedAt: at(253),
      heal: 'kept',
      restartedOn: [],
      resubmittedAt: at(254),
      jobRunningAt: at(256),
      recoveredAt: at(286),
    },
    { at: at(437), kind: 'config-error', message: 'the run ends: not a restart' },
  ],
};

describe('recovery accounting', () => {
  it('splits a restart into detection, keel, trainer start-up and rollouts lost', () => {
    const [crash, ...others] = restartAccounts(training);
    assert.equal(others.length, 0, 'a failure that ends the run is not a restart');
    assert.deepEqual(crash, {
      kind: 'job-crashed',
      at: at(251),
      rollout: 24,
      tracker: 19,
      rolloutsLost: 5, // rollouts 20..24 are done again
      detection: 1, // 250 -> 251
      keel: 5, // 251 -> 256 (job RUNNING)
      trainerStartup: 30, // 256 -> 286
      down: 36, // 250 -> 286
      heal: 'kept',
      restartedOn: [],
    });
    assert.equal(
      formatRestart(crash!),
      'detection 1.0 s, keel 5.0 s (Ray kept), trainer start-up 30.0 s, rollouts lost 5',
    );
  });

  it('takes the healthy pace from checkpoint intervals no failure fell into, and totals the run', () => {
    // 9->19: 100 s / 10; 29->39: 100 s / 10; 19->29 holds the crash and is left out
    assert.equal(healthyPace(training), 10);
    const totals = recoveryTotals(training, at(0), at(440));
    // wall 440; down 36; redo 5 x 10 = 50; kept 440 - 36 - 50 = 354; ETTR 354/440; without start-up 354/(440-30)
    assert.equal(totals.wall, 440);
    assert.equal(totals.down, 36);
    assert.equal(totals.redo, 50);
    assert.equal(totals.kept, 354);
    assert.equal(totals.ettr, 354 / 440);
    assert.equal(totals.ettrExcludingStartup, 354 / 410);
    assert.match(formatTotals(totals), /^time kept 354\.0 s of 440\.0 s \(ETTR 0\.80\)/);
  });

  it('a failure recorded by keel 0.2 (no recovery timeline) shows what is known, and no pace without checkpoints', () => {
    const old = {
      checkpoints: [],
      failures: [{ at: at(10), kind: 'node-lost', message: 'lost', lastRollout: 3, tracker: -1, recoveredAt: at(90) }],
    };
    const [r] = restartAccounts(old);
    assert.equal(r!.rolloutsLost, 4);
    assert.equal(r!.keel, undefined);
    assert.equal(r!.down, undefined, 'no last progress and no detection time recorded');
    assert.equal(healthyPace(old), undefined);
    assert.match(formatTotals(recoveryTotals(old, at(0), at(100))), /pace not known yet/);
  });

  it('a crash loop is one outage, from the progress before the first crash to the first rollout after the last', () => {
    const loop = {
      checkpoints: [],
      failures: [
        { at: at(101), kind: 'job-crashed', message: '1', lastProgressAt: at(100), detectedAt: at(101) },
        // (each crashed job's supervision began after the last: its "last progress" is its own start)
        { at: at(131), kind: 'job-crashed', message: '2', lastProgressAt: at(120), detectedAt: at(131) },
        {
          at: at(161),
          kind: 'job-crashed',
          message: '3',
          lastProgressAt: at(150),
          detectedAt: at(161),
          recoveredAt: at(400),
        },
        { at: at(501), kind: 'hang', message: 'still open', lastProgressAt: at(480), detectedAt: at(501) },
      ],
    };
    // 100 -> 400 (one outage of three crashes and the pause after them), then 480 -> the end at 600
    assert.equal(outageSeconds(loop.failures, at(600)), 300 + 120);
    assert.equal(recoveryTotals(loop, at(0), at(600)).down, 420);
  });

  it('keel report draws a bar per restart, each part exactly', async () => {
    const data = reportData({
      workflowId: 'keel-recovery-chart',
      runStatus: 'COMPLETED',
      training: { phase: 'succeeded', submissions: 2, restarts: 1, numRollout: 40, evals: [], ...training },
    });
    const svg = (await renderReport(data, 'svg')) as string;
    const restart = '#1 job-crashed at rollout 24';
    assert.deepEqual(drawn(svg, 'recovery'), [
      markLabel.recovery(restart, 'detection', 1),
      markLabel.recovery(restart, 'keel', 5),
      markLabel.recovery(restart, 'trainer start-up', 30),
      markLabel.recovery(restart, 'rollouts re-done', 50),
    ]);
  });

  it("keel status prints each restart's recovery under its failure, and the run's totals", () => {
    const text = formatStatus({
      workflowId: 'keel-status-recovery',
      runStatus: 'COMPLETED',
      pipeline: {
        name: 'status-recovery',
        phase: 'succeeded',
        paused: false,
        warnings: [],
        steps: [
          {
            id: 'train',
            kind: 'train',
            needs: [],
            state: 'succeeded',
            attempts: 1,
            startedAt: at(0),
            endedAt: at(440),
          },
        ],
      },
      training: { phase: 'succeeded', submissions: 2, restarts: 1, numRollout: 40, evals: [], ...training },
    });
    const lines = text.split('\n');
    const failure = lines.findIndex((l) => l.includes('failure') && l.includes('job-crashed'));
    assert.ok(failure > 0, text);
    assert.equal(
      lines[failure + 1]?.trim(),
      'recovery: detection 1.0 s, keel 5.0 s (Ray kept), trainer start-up 30.0 s, rollouts lost 5',
    );
    assert.match(text, /time kept 354\.0 s of 440\.0 s \(ETTR 0\.80\)/);
  });
});
