// slime's levers as keel plan what-ifs, worked by hand on the R1 preset: an async save (training stops only for the
// staging part; a failure during the background write loses one more save's time) and rollout-engine fault tolerance
// (a share of failures no longer restarts the job).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { plan } from '../../src/plan/index.js';
import { expectedEttr, youngIntervalSeconds } from '../../src/plan/reliability.js';
import { resolveSpecOrThrow } from '../../src/spec/index.js';

const near = (actual: number | undefined, expected: number, tolerance = 5e-5) =>
  assert.ok(actual !== undefined && Math.abs(actual - expected) <= tolerance, `${actual} is not ${expected}`);

// M = 597,196,800 / 419 s (plan-reliability.test.ts); delta = 960 s; R = 1,500 s; r = 1,200 s; k = 20: tau = 24,000 s.
const M = 597_196_800 / 419;

describe("slime's levers, planned", () => {
  it('async save: 1 - b/tau - (R + tau/2 + delta)/M', () => {
    // 1 - 60/24,000 - (1,500 + 12,000 + 960)/1,425,290.69 = 1 - 0.0025 - 0.01014530 = 0.98735470
    const model = {
      saveSeconds: 60,
      restartSeconds: 1500,
      rolloutSeconds: 1200,
      mtbfSeconds: M,
      extraLossSeconds: 960,
    };
    near(expectedEttr(model, 20), 0.9873547);
  });

  it('engine fault tolerance: only the other failures restart; Young grows by 1/sqrt(s)', () => {
    // 1 - 960/24,000 - 0.8 x 13,500/1,425,290.69 = 1 - 0.04 - 0.00757740 = 0.95242260
    const model = { saveSeconds: 960, restartSeconds: 1500, rolloutSeconds: 1200, mtbfSeconds: M, restartedShare: 0.8 };
    near(expectedEttr(model, 20), 0.9524226);
    near(youngIntervalSeconds(model), Math.sqrt((2 * 960 * M) / 0.8), 1e-6);
  });

  it('keel plan reports both what-ifs for the R1 preset, as findings with their fix', () => {
    const p = plan(resolveSpecOrThrow({ preset: 'deepseek-r1-128xh100' }));
    const byName = new Map((p.reliability.levers ?? []).map((l) => [l.name, l]));
    near(byName.get('async save')?.expectedEttr, 0.9873547);
    near(byName.get('engine fault tolerance')?.expectedEttr, 0.9524226);
    assert.ok(byName.get('both')!.expectedEttr > byName.get('async save')!.expectedEttr);
    const fixes = p.findings.filter((f) => f.path === 'extraArgs' && f.severity === 'info').map((f) => f.fix);
    assert.ok(fixes.some((f) => /add --async-save/.test(f ?? '')));
    assert.ok(fixes.some((f) => /add --use-fault-tolerance/.test(f ?? '')));
    const async = p.findings.find((f) => /with an async save/.test(f.message));
    assert.match(async!.message, /blocks training for 1 min of its 16 min .*expected ETTR 0\.987/);
  });

  it('a lever already on is no what-if', () => {
    const p = plan(resolveSpecOrThrow({ preset: 'deepseek-r1-128xh100', overrides: { extraArgs: ['--async-save'] } }));
    assert.deepEqual(
      (p.reliability.levers ?? []).map((l) => l.name),
      ['engine fault tolerance'],
    );
  });
});
