// The ETTR model of keel plan against Young's interval worked by hand, the "far from the best" warning at its
// bounds, and bad reliability figures refused by path (docs/reliability.md).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execa } from 'execa';
import { plan } from '../../src/plan/index.js';
import { resolveSpecInput, resolveSpecOrThrow, type PresetName } from '../../src/spec/index.js';

const repoRoot = new URL('../..', import.meta.url).pathname;

function planWith(preset: PresetName, overrides: Record<string, unknown> = {}) {
  return plan(resolveSpecOrThrow({ preset, overrides }));
}

/** |actual - expected| <= tolerance, with both in the message */
function near(actual: number | undefined, expected: number, tolerance: number): void {
  assert.ok(actual !== undefined && Math.abs(actual - expected) <= tolerance, `${actual} is not ${expected}`);
}

describe('case 1: the deepseek-r1-128xh100 preset, worked by hand', () => {
  // G = 16 nodes x 8 GPUs = 128 GPUs; f = 419 / (54 d x 24 h x 16,384 GPUs) = 419 / 21,233,664 per GPU-hour.
  // M = 1 / (f·G) = 21,233,664 / (419 x 128) h = 165,888 / 419 h = 395.9141 h = 597,196,800 / 419 s = 1,425,290.69 s.
  // Failures per day = 24 / M = 10,056 / 165,888 = 0.060619.
  // delta = 16 min = 960 s; R = 25 min = 1,500 s; r = 20 min = 1,200 s.
  // Young: tau* = sqrt(2 x 960 x 1,425,290.69) = sqrt(2,736,558,125) = 52,312.12 s = 14.5311 h = 43.593 rollouts.
  // ETTR(k) = 1 - delta/(k·r) - (R + k·r/2)/M:
  //   k = 43: 1 - 960/51,600 - 27,300/1,425,290.69 = 1 - 0.01860465 - 0.01915399 = 0.96224136
  //   k = 44: 1 - 960/52,800 - 27,900/1,425,290.69 = 1 - 0.01818182 - 0.01957495 = 0.96224323  <- the higher: 44
  //   k = 20 (ckpt.saveInterval): 1 - 960/24,000 - 13,500/1,425,290.69 = 1 - 0.04 - 0.00947175 = 0.95052825
  // 20 / 44 = 0.45 < 0.5: far from the best, a warning.
  const p = planWith('deepseek-r1-128xh100');
  const r = p.reliability;
  it('failure rate, MTBF and failures per day', () => {
    assert.equal(r.gpus, 128);
    assert.equal(r.rateIsDefault, true);
    near(r.failuresPerGpuHour, 419 / 21_233_664, 1e-15);
    near(r.mtbfHours, 395.9141, 1e-4);
    near(r.failuresPerDay, 0.060619, 1e-6);
  });
  it("Young's interval and the best whole number of rollouts", () => {
    near(r.youngIntervalHours, 14.5311, 1e-4);
    assert.equal(r.optimalSaveInterval, 44);
    near(r.optimalEttr, 0.96224323, 1e-8);
  });
  it('the expected ETTR at the configured interval, and the warning', () => {
    assert.equal(r.configuredSaveInterval, 20);
    near(r.expectedEttr, 0.95052825, 1e-8);
    const warning = p.findings.find((f) => f.path === 'ckpt.saveInterval' && f.severity === 'warning');
    assert.ok(warning, JSON.stringify(p.findings));
    assert.match(
      warning.message,
      /saving every 20 rollouts is 0\.45x .* 44 rollouts .* expected ETTR 0\.951 against 0\.962/,
    );
    // 40 = 2 x eval.evalInterval: 1 - 960/48,000 - 25,500/1,425,290.69 = 1 - 0.02 - 0.01789113 = 0.96210887
    assert.match(warning.fix ?? '', /near 44 \(40, a multiple of eval\.evalInterval 20, gives 0\.962\)/);
  });
});

describe('case 2: round figures on the tiny-local preset, worked by hand', () => {
  // G = 4 nodes x 2 GPUs = 8; f = 0.0125 per GPU-hour -> 0.1 failures an hour: M = 10 h = 36,000 s, 2.4 a day.
  // delta = 3 min = 180 s; R = 10 min = 600 s; r = 5 min = 300 s; 100 rollouts.
  // Young: tau* = sqrt(2 x 180 x 36,000) = sqrt(12,960,000) = 3,600 s = 1 h = 12 rollouts exactly.
  // ETTR(12) = 1 - 180/3,600 - (600 + 1,800)/36,000 = 1 - 0.05 - 0.0666667 = 0.8833333
  // ETTR(48) = 1 - 180/14,400 - (600 + 7,200)/36,000 = 1 - 0.0125 - 0.2166667 = 0.7708333; 48 / 12 = 4: far.
  // Over the run at 48: 100 x 300 s = 8.3333 h of training / 0.7708333 = 10.8108 h of wall time, 1.08108 failures.
  const figures = { failuresPerGpuHour: 0.0125, checkpointSaveTime: '3m', restartTime: '10m', rolloutTime: '5m' };
  const at = (saveInterval: number) =>
    planWith('tiny-local', { reliability: figures, ckpt: { saveInterval }, eval: { evalInterval: 20 } });
  it("Young's interval, the ETTR at the best and at the configured interval", () => {
    const r = at(48).reliability;
    near(r.mtbfHours, 10, 1e-12);
    near(r.failuresPerDay, 2.4, 1e-12);
    assert.equal(r.rateIsDefault, false);
    near(r.youngIntervalHours, 1, 1e-12);
    assert.equal(r.optimalSaveInterval, 12);
    near(r.optimalEttr, 0.8833333, 1e-7);
    near(r.expectedEttr, 0.7708333, 1e-7);
    near(r.expectedWallHours, 10.8108, 1e-4);
    near(r.expectedFailures, 1.08108, 1e-5);
  });
  it('far means outside 0.5x..2x of the best: 6 and 24 are not, 5 and 25 are', () => {
    const warned = (k: number) =>
      at(k).findings.some((f) => f.path === 'ckpt.saveInterval' && f.severity === 'warning');
    assert.deepEqual(
      [5, 6, 12, 24, 25, 48].map((k) => [k, warned(k)]),
      [
        [5, true],
        [6, false],
        [12, false],
        [24, false],
        [25, true],
        [48, true],
      ],
    );
    // ETTR(6) = 1 - 180/1,800 - (600 + 900)/36,000 = 1 - 0.1 - 0.0416667 = 0.8583333
    near(at(6).reliability.expectedEttr, 0.8583333, 1e-7);
  });
  it('the fix names the nearest multiple of eval.evalInterval too', () => {
    // ETTR(20) = 1 - 180/6,000 - (600 + 3,000)/36,000 = 1 - 0.03 - 0.1 = 0.87
    const warning = at(48).findings.find((f) => f.path === 'ckpt.saveInterval' && f.severity === 'warning');
    assert.match(warning?.fix ?? '', /near 12 \(20, a multiple of eval\.evalInterval 20, gives 0\.870\)/);
  });
});

describe('the edges of the model', () => {
  it('a run shorter than the best interval: save at the end is best, said as info, not a warning', () => {
    const p = planWith('tiny-local');
    assert.equal(p.reliability.optimalSaveInterval, 100);
    assert.equal(p.reliability.optimalIsRunLength, true);
    const findings = p.findings.filter((f) => f.path === 'ckpt.saveInterval');
    assert.deepEqual(
      findings.map((f) => f.severity),
      ['info'],
    );
    assert.match(findings[0]!.message, /fewer than 0\.01 failures are expected over the run/);
  });
  it('a configured interval that keeps nothing (ETTR 0) while the best is the whole run', () => {
    // r = 1 s, delta = 2 s, every rollout: ETTR(1) = 1 - 2/1 - ... < 0 -> 0; at 100: 1 - 2/100 - (60 + 50)/M ~ 0.98
    const p = planWith('tiny-local', {
      reliability: { checkpointSaveTime: '2s', restartTime: '60s', rolloutTime: '1s' },
      ckpt: { saveInterval: 1 },
    });
    assert.equal(p.reliability.expectedEttr, 0);
    assert.equal(p.reliability.expectedWallHours, undefined);
    assert.equal(p.reliability.optimalSaveInterval, 100);
    near(p.reliability.optimalEttr, 0.98, 1e-4);
    const info = p.findings.find((f) => f.path === 'ckpt.saveInterval' && f.severity === 'info');
    assert.match(
      info?.message ?? '',
      /highest when saving only at the end \(0\.980, against 0\.000 saving every 1 rollouts\)/,
    );
  });
  it('failures faster than the model holds: ETTR floored at 0 and a warning', () => {
    // 1 per GPU-hour x 8 GPUs: M = 450 s; tau* = sqrt(2 x 180 x 450) = 402 s -> 1 rollout of 300 s;
    // ETTR(1) = 1 - 180/300 - (600 + 150)/450 = 1 - 0.6 - 1.667 < 0 -> 0.
    const p = planWith('tiny-local', {
      reliability: { failuresPerGpuHour: 1, checkpointSaveTime: '3m', restartTime: '10m', rolloutTime: '5m' },
    });
    assert.equal(p.reliability.optimalSaveInterval, 1);
    assert.equal(p.reliability.optimalEttr, 0);
    assert.equal(p.reliability.expectedWallHours, undefined);
    assert.ok(p.findings.some((f) => f.path === 'reliability' && f.severity === 'warning'));
  });
  it('without the three times (a spec with no reliability section): the rate and MTBF only, and why', () => {
    const p = planWith('qwen3-4b-1node');
    assert.equal(p.reliability.expectedEttr, undefined);
    assert.deepEqual(p.reliability.missing, [
      'reliability.checkpointSaveTime',
      'reliability.restartTime',
      'reliability.rolloutTime',
    ]);
    near(p.reliability.mtbfHours, 165_888 / 419 / (8 / 128), 1e-9);
    assert.ok(p.findings.some((f) => f.path === 'reliability' && f.severity === 'info'));
  });
});

describe('bad reliability figures are refused, naming the field', () => {
  function problems(reliability: Record<string, unknown>): string[] {
    const r = resolveSpecInput({ preset: 'deepseek-r1-128xh100', overrides: { reliability } });
    assert.equal(r.ok, false, 'expected the spec to be invalid');
    return r.ok ? [] : r.problems.map((p) => `${p.path}: ${p.message}`);
  }
  it('a negative failure rate', () => {
    assert.deepEqual(problems({ failuresPerGpuHour: -2e-5 }), [
      'reliability.failuresPerGpuHour: must be a positive rate of failures per GPU-hour (Llama 3 saw 1.97e-5)',
    ]);
  });
  it('a zero rollout time', () => {
    assert.deepEqual(problems({ rolloutTime: '0s' }), [
      'reliability.rolloutTime: must be at least 100ms (a rollout always takes time)',
    ]);
  });
  it('a time that is not a duration, and a misspelt field', () => {
    assert.deepEqual(problems({ restartTime: 25, checkpointSaveTme: '16m' }), [
      'reliability.restartTime: Invalid input: expected string, received number',
      "reliability.checkpointSaveTme: unknown field -- did you mean 'checkpointSaveTime'?",
    ]);
  });
});

describe('keel plan (the CLI)', () => {
  it('--json carries reliability.expectedEttr and reliability.optimalSaveInterval', async () => {
    const r = await execa('node', ['bin/keel.js', 'plan', '--preset', 'deepseek-r1-128xh100', '--json'], {
      cwd: repoRoot,
    });
    const { reliability } = JSON.parse(r.stdout);
    near(reliability.expectedEttr, 0.95052825, 1e-8);
    assert.equal(reliability.optimalSaveInterval, 44);
    near(reliability.failuresPerDay, 0.060619, 1e-6);
  });
  it('a zero rollout time: exit 2, the field named', async () => {
    const r = await execa(
      'node',
      ['bin/keel.js', 'plan', '--preset', 'deepseek-r1-128xh100', '--set', 'reliability.rolloutTime=0s'],
      { cwd: repoRoot, reject: false },
    );
    assert.equal(r.exitCode, 2);
    assert.match(r.stderr, /reliability\.rolloutTime: must be at least 100ms/);
  });
});
