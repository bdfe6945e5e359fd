// The rehearsal's arithmetic (src/plan/rehearsal.ts), worked by hand: ETTR measured from keel's failure records and
// the rehearsal's measured times, against the plan's model fed with the same times and the injected failure rate.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { failurePhase, measureLines, rehearsalEttr, type RehearsalMeasures } from '../../src/plan/rehearsal.js';

const near = (actual: number, expected: number, tolerance = 1e-6) =>
  assert.ok(Math.abs(actual - expected) <= tolerance, `${actual} is not ${expected}`);

const t0 = Date.parse('2026-01-01T00:00:00Z');
const at = (seconds: number) => new Date(t0 + seconds * 1000).toISOString();

// Two restarts: down 50 s (5 rollouts lost) and 60 s (13 lost).
const failures = [
  {
    at: at(300),
    kind: 'job-crashed',
    message: '',
    lastRollout: 24,
    tracker: 19,
    lastProgressAt: at(295),
    detectedAt: at(300),
    recoveredAt: at(345),
  },
  {
    at: at(710),
    kind: 'job-hung',
    message: '',
    lastRollout: 52,
    tracker: 39,
    lastProgressAt: at(700),
    detectedAt: at(710),
    recoveredAt: at(760),
  },
];
const measures: RehearsalMeasures = {
  wallSeconds: 1000,
  endedAt: at(1000),
  failuresInjected: 2,
  restartingFailures: 2,
  saveInterval: 20,
  // 20 rollouts of 9 s (evals spread over them) and a save of 8 s
  periodSeconds: 188,
  saveSeconds: 8,
  saves: 4,
};

describe("the rehearsal's ETTR, measured and modelled", () => {
  it('measured: wall - outages - re-done rollouts - saves, over wall', () => {
    const e = rehearsalEttr({ failures }, measures);
    // r = (188 - 8)/20 = 9 s; kept = 1000 - (50 + 60) - 18 x 9 - 4 x 8 = 696
    near(e.model.rolloutSeconds, 9);
    near(e.downSeconds, 110);
    assert.equal(e.rolloutsLost, 18);
    near(e.ettrMeasured, 0.696);
  });

  it("modelled: the plan's 1 - delta/tau - (R + tau/2)/M with the rehearsal's own R, delta, r and M", () => {
    const e = rehearsalEttr({ failures }, measures);
    // R = 110/2 = 55 s, M = 1000/2 = 500 s, tau = 180 s: 1 - 8/180 - (55 + 90)/500 = 0.665556
    near(e.model.restartSeconds, 55);
    near(e.model.mtbfSeconds, 500);
    near(e.ettrModel, 1 - 8 / 180 - 145 / 500);
  });

  it('an engine failure restarted inside the job changes neither figure', () => {
    const e = rehearsalEttr({ failures }, { ...measures, failuresInjected: 3, restartingFailures: 2 });
    near(e.model.restartedShare!, 2 / 3);
    near(e.ettrModel, 1 - 8 / 180 - 145 / 500);
    near(e.ettrMeasured, 0.696);
  });

  it("an async save: training stops for the staging, a failure loses the save's write too", () => {
    const e = rehearsalEttr({ failures }, { ...measures, saveSeconds: 2, periodSeconds: 182, asyncWriteSeconds: 8 });
    // r = (182 - 2)/20 = 9 s; model 1 - 2/180 - (55 + 90 + 8)/500; measured (1000 - 110 - 162 - 8)/1000
    near(e.ettrModel, 1 - 2 / 180 - 153 / 500);
    near(e.ettrMeasured, 0.72);
  });

  it('fed with where the rehearsal placed its failures, the model loses what they lost; the plan assumes random times', () => {
    const placed = rehearsalEttr(
      { failures },
      { ...measures, placement: { rolloutsSinceSave: [5, 13], duringWrite: 0 } },
    );
    // 9 rollouts since the save on average: 1 - 8/180 - (55 + 0.45 x 180)/500
    near(placed.model.lostShare!, 0.45);
    near(placed.ettrModel, 1 - 8 / 180 - (55 + 81) / 500);
    near(placed.ettrModelAtRandom, 1 - 8 / 180 - 145 / 500);
    near(placed.ettrMeasured, 0.696);
    // without a placement, the model is the plan's
    const plain = rehearsalEttr({ failures }, measures);
    near(plain.ettrModel, plain.ettrModelAtRandom);
    assert.equal(plain.model.lostShare, undefined);
  });

  it('an async save: a failure placed during the write loses the interval before it as well', () => {
    const e = rehearsalEttr(
      { failures },
      {
        ...measures,
        saveSeconds: 2,
        periodSeconds: 182,
        asyncWriteSeconds: 8,
        placement: { rolloutsSinceSave: [1, 13], duringWrite: 1 },
      },
    );
    // r = 9 s, tau = 180 s: half the failures lose a whole interval more, 90 s each on average
    near(e.model.extraLossSeconds!, 90);
    near(e.ettrModel, 1 - 2 / 180 - (55 + 0.35 * 180 + 90) / 500);
    near(e.ettrModelAtRandom, 1 - 2 / 180 - (55 + 90 + 8) / 500);
  });

  it('failures fall evenly over the save interval: half an interval lost on average, for any first few', () => {
    const phases = Array.from({ length: 8 }, (_, i) => failurePhase(i, 20));
    assert.deepEqual(phases, [10, 5, 15, 3, 13, 8, 18, 1]);
    for (const n of [3, 5, 7]) {
      const mean = phases.slice(0, n).reduce((a, b) => a + b, 0) / n;
      assert.ok(Math.abs(mean - 10) <= 1.5, `the first ${n} lose ${mean} rollouts on average`);
    }
    assert.ok(phases.every((p) => p >= 1 && p <= 19));
  });

  it("the healthy period from two saves of one job; without one, from the rollouts' lines", () => {
    // save interval 4: rollouts 10 s apart, the save (6 s) and eval (4 s) after rollouts 3, 7, 11 (a 20 s gap)
    const job = (name: string, from: number, to: number, startAt: number, seen: Map<string, number>) => {
      let t = startAt;
      for (let n = from; n <= to; n++) {
        seen.set(`${name} perf ${n}`, t * 1000);
        if ((n + 1) % 4 === 0) {
          seen.set(`${name} saving ${n}`, (t + 1) * 1000);
          seen.set(`${name} saved ${n}`, (t + 7) * 1000);
          t += 20;
        } else t += 10;
      }
      return seen;
    };
    // one job saving at 3 and 7, no failure between: the period is 4 rollouts' time with the save and eval, 50 s
    const twoSaves = measureLines(job('a', 0, 9, 0, new Map()), [], 4, false);
    assert.equal(twoSaves.periodFrom, 'saves');
    near(twoSaves.periodSeconds, 50);
    near(twoSaves.saveSeconds, 6);
    assert.equal(twoSaves.saves, 2);

    // a failure after every save: no job saves twice; the period is 3 plain gaps (10 s) and the save's (20 s)
    const seen = job('a', 0, 5, 0, new Map());
    job('b', 4, 9, 200, seen);
    const injected = [70_000, 290_000];
    const fromRollouts = measureLines(seen, injected, 4, false);
    assert.equal(fromRollouts.periodFrom, 'rollouts');
    near(fromRollouts.periodSeconds, 3 * 10 + 20);
    assert.equal(fromRollouts.saves, 2);

    // a stretch with a failure in it is not healthy: a 300 s gap over a failure changes nothing
    seen.set('b perf 10', 600_000);
    near(measureLines(seen, [...injected, 500_000], 4, false).periodSeconds, 50);
    assert.equal(measureLines(new Map(), [], 4, false).periodFrom, 'none');
  });
});
