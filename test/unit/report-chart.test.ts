// keel report's chart: built from a run's status, rendered to SVG/PNG/HTML in Node; the drawn marks are the data.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { RunStatus } from '../../src/client/index.js';
import { markLabel, reportData } from '../../src/report/chart.js';
import { renderReport, reportFormatOf } from '../../src/report/render.js';
import { drawn } from '../support/report.js';

const t0 = Date.parse('2026-11-29T00:00:00Z');
const at = (seconds: number) => new Date(t0 + seconds * 1000).toISOString();

const status: RunStatus = {
  workflowId: 'keel-chart-test',
  runStatus: 'COMPLETED',
  pipeline: {
    name: 'chart-test',
    phase: 'succeeded',
    paused: false,
    warnings: [],
    steps: [
      { id: 'probe', kind: 'probe', needs: [], state: 'succeeded', attempts: 1, startedAt: at(0), endedAt: at(4) },
      { id: 'download', kind: 'hf-download', needs: [], state: 'skipped', attempts: 0, reason: 'outputs complete' },
      {
        id: 'train',
        kind: 'train',
        needs: ['probe'],
        state: 'succeeded',
        attempts: 1,
        startedAt: at(5),
        endedAt: at(90),
      },
    ],
  },
  training: {
    phase: 'succeeded',
    submissions: 2,
    restarts: 1,
    numRollout: 20,
    checkpoints: [
      { iteration: 9, at: at(40), evalScore: 0.1234567891 },
      { iteration: 19, at: at(88), evalScore: 0.5 },
    ],
    evals: [
      { rollout: 9, score: 0.1234567891 },
      { rollout: 19, score: 0.5 },
    ],
    rewards: Array.from({ length: 20 }, (_, i) => ({ rollout: i, reward: i / 30 })),
    failures: [
      { at: at(60), kind: 'node-lost', message: 'node 127.0.1.3 lost', lastRollout: 13, tracker: 9 },
      { at: at(61), kind: 'config-error', message: 'not a restart: the run ends' },
    ],
  },
};

describe('keel report chart', () => {
  it('draws every eval and reward exactly, marks checkpoints and restarts, and the started steps', async () => {
    const svg = (await renderReport(reportData(status), 'svg')) as string;
    assert.match(svg, /^<svg /);
    assert.deepEqual(drawn(svg, 'eval'), [markLabel.eval(9, 0.1234567891), markLabel.eval(19, 0.5)]);
    assert.deepEqual(
      drawn(svg, 'reward'),
      status.training!.rewards!.map((r) => markLabel.reward(r.rollout, r.reward)),
    );
    assert.deepEqual(drawn(svg, 'checkpoint'), [markLabel.checkpoint(9), markLabel.checkpoint(19)]);
    assert.deepEqual(drawn(svg, 'restart'), [markLabel.restart(13, 'node-lost')]);
    assert.deepEqual(drawn(svg, 'step'), ['step probe succeeded', 'step train succeeded']);
  });

  it('writes a PNG and a self-contained HTML page with the same chart and its data', async () => {
    const data = reportData(status);
    const png = (await renderReport(data, 'png')) as Uint8Array;
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    assert.ok(png.length > 10_000, `a PNG of a chart, not an empty image (${png.length} bytes)`);
    const html = (await renderReport(data, 'html')) as string;
    assert.deepEqual(drawn(html, 'eval'), drawn((await renderReport(data, 'svg')) as string, 'eval'));
    const embedded = JSON.parse(/<script type="application\/json" id="keel-report">(.*)<\/script>/.exec(html)![1]!);
    assert.deepEqual(embedded.data.evals, status.training!.evals);
    assert.doesNotMatch(html, /<script(?! type="application\/json")/, 'no script to run: the page is the SVG');
  });

  it('names the format by the extension', () => {
    assert.equal(reportFormatOf('run.svg'), 'svg');
    assert.equal(reportFormatOf('out/RUN.PNG'), 'png');
    assert.equal(reportFormatOf('run.htm'), 'html');
    assert.equal(reportFormatOf('run.pdf'), undefined);
  });

  it('charts every execution of a run name: rollouts 0 to the last, the boundary marked, the later value kept', async () => {
    // a continuation: the second execution resumed from checkpoint 19 and ran rollouts 20-29 (its eval before rollout
    // 20 re-done), with a restart of its own; steps of both executions, named by execution
    const continuation: RunStatus = {
      workflowId: status.workflowId,
      runStatus: 'COMPLETED',
      pipeline: {
        ...status.pipeline!,
        steps: [
          {
            id: 'train',
            kind: 'train',
            needs: [],
            state: 'succeeded',
            attempts: 1,
            startedAt: at(200),
            endedAt: at(300),
          },
        ],
      },
      training: {
        phase: 'succeeded',
        submissions: 2,
        restarts: 1,
        numRollout: 30,
        checkpoints: [{ iteration: 29, at: at(290), evalScore: 0.7 }],
        evals: [
          { rollout: 20, score: 0.55 },
          { rollout: 29, score: 0.7 },
        ],
        rewards: Array.from({ length: 10 }, (_, i) => ({ rollout: 20 + i, reward: 0.9 })),
        failures: [{ at: at(250), kind: 'job-crashed', message: 'exit 1', lastRollout: 24, tracker: 19 }],
      },
    };
    const data = reportData([status, continuation]);
    assert.equal(data.executions, 2);
    assert.deepEqual(
      data.rewards.map((r) => r.rollout),
      Array.from({ length: 30 }, (_, i) => i),
    );
    const svg = (await renderReport(data, 'svg')) as string;
    assert.deepEqual(drawn(svg, 'boundary'), [markLabel.boundary(20, 2)]);
    assert.deepEqual(
      drawn(svg, 'checkpoint'),
      [9, 19, 29].map((i) => markLabel.checkpoint(i)),
    );
    assert.deepEqual(drawn(svg, 'restart'), [markLabel.restart(13, 'node-lost'), markLabel.restart(24, 'job-crashed')]);
    assert.deepEqual(drawn(svg, 'step'), [
      'step run 1: probe succeeded',
      'step run 1: train succeeded',
      'step run 2: train succeeded',
    ]);
    assert.match(svg, /2 executions/);
    // one execution alone (--execution): no boundary, its own rollouts only
    const one = reportData(continuation);
    assert.deepEqual(one.boundaries, []);
    assert.equal(one.rewards[0]?.rollout, 20);
  });

  it('dates the time axis in UTC on a 24-hour clock', async () => {
    const evening = (h: number) => new Date(Date.parse('2026-11-29T22:55:00Z') + h * 3_600_000).toISOString();
    const late: RunStatus = {
      ...status,
      pipeline: {
        ...status.pipeline!,
        steps: [
          {
            id: 'train',
            kind: 'train',
            needs: [],
            state: 'succeeded',
            attempts: 1,
            startedAt: evening(0),
            endedAt: evening(3),
          },
        ],
      },
    };
    const svg = (await renderReport(reportData(late), 'svg')) as string;
    const ticks = [...svg.matchAll(/>(2026-1[12]-\d\d \d\d:\d\d)</g)].map((m) => m[1]!);
    assert.ok(ticks.length >= 2, `dated ticks on the time axis: ${ticks.join(', ')}`);
    assert.ok(
      ticks.some((t) => t.startsWith('2026-11-29 23:')),
      ticks.join(', '),
    );
    assert.ok(
      ticks.some((t) => t.startsWith('2026-11-30 0')),
      `the next day, 24-hour: ${ticks.join(', ')}`,
    );
    assert.match(svg, /time \(UTC\)/);
  });
});
