import assert from 'node:assert/strict';
import { test } from 'node:test';
import { planNextDeletion, planRetention, type RetentionCandidate } from '../../src/progress/retention.js';

/** Complete checkpoints at rollout ids 19, 39, ..., like slime with --save-interval 20. */
function saves(count: number, scores: Record<number, number> = {}): RetentionCandidate[] {
  return Array.from({ length: count }, (_, i) => {
    const iteration = 20 * i + 19;
    return { iteration, complete: true, score: scores[iteration] };
  });
}

const kept = (plan: ReturnType<typeof planRetention>) => plan.keep.map((entry) => entry.iteration);

test('keeps the last K, every M-th, the best by score, and the tracker; deletes the rest', () => {
  const plan = planRetention({
    iterations: saves(10, { 39: 0.61, 79: 0.4, 119: 0.55, 159: 0.58 }),
    tracker: 199,
    keepLast: 2,
    keepEvery: 100,
    keepBest: 2,
  });
  assert.deepEqual(plan.keep, [
    { iteration: 39, reasons: ['best'] },
    { iteration: 99, reasons: ['every'] },
    { iteration: 159, reasons: ['best'] },
    { iteration: 179, reasons: ['last'] },
    { iteration: 199, reasons: ['tracker', 'every', 'last'] },
  ]);
  assert.deepEqual(plan.delete, [19, 59, 79, 119, 139]);
});

test('never deletes the tracker or the checkpoint being written, even with nothing else to keep', () => {
  const plan = planRetention({
    iterations: [...saves(3), { iteration: 79, complete: false }],
    tracker: 19,
    writing: 79,
    keepLast: 0,
  });
  assert.deepEqual(plan.keep, [
    { iteration: 19, reasons: ['tracker'] },
    { iteration: 79, reasons: ['writing', 'awaiting-newer-checkpoint'] },
  ]);
  assert.deepEqual(plan.delete, [39, 59]);
});

test('a partial dir is kept until a newer complete checkpoint exists, then deleted', () => {
  const crashed = { iteration: 59, complete: false };
  const before = planRetention({ iterations: [...saves(2), crashed], tracker: 39, keepLast: 1 });
  assert.deepEqual(kept(before), [39, 59]);
  assert.equal(before.keep[1]?.reasons[0], 'awaiting-newer-checkpoint');
  assert.deepEqual(before.delete, [19]);

  // The resumed run saved 59 again (complete this time) and 79: the old partial 59 was replaced in place,
  // while a stray partial 69 from some older layout is now deletable.
  const later = planRetention({
    iterations: [...saves(4), { iteration: 69, complete: false }],
    tracker: 79,
    keepLast: 1,
  });
  assert.deepEqual(kept(later), [79]);
  assert.deepEqual(later.delete, [19, 39, 59, 69]);
});

test('the best is chosen among complete, scored checkpoints (NaN and unscored ignored; ties go to the newer)', () => {
  const plan = planRetention({
    iterations: [
      { iteration: 19, complete: true, score: 0.5 },
      { iteration: 39, complete: true, score: Number.NaN },
      { iteration: 59, complete: true, score: 0.5 },
      { iteration: 79, complete: false, score: 0.9 },
      { iteration: 99, complete: true },
    ],
    tracker: 99,
    keepLast: 1,
    keepBest: 1,
  });
  assert.deepEqual(plan.keep, [
    { iteration: 59, reasons: ['best'] },
    { iteration: 99, reasons: ['tracker', 'last'] },
  ]);
  assert.deepEqual(plan.delete, [19, 39, 79]);
});

test('with a release tracker or none, only the rules protect checkpoints; bad limits are refused', () => {
  assert.deepEqual(planRetention({ iterations: saves(3), tracker: 'release', keepLast: 1 }).delete, [19, 39]);
  assert.deepEqual(planRetention({ iterations: [], tracker: undefined, keepLast: 3 }), { keep: [], delete: [] });
  assert.throws(() => planRetention({ iterations: [], tracker: 1, keepLast: -1 }), RangeError);
  assert.throws(() => planRetention({ iterations: [], tracker: 1, keepLast: 1, keepEvery: 2.5 }), RangeError);
});

test('names what the next checkpoint will push out, without counting the next checkpoint itself', () => {
  const input = {
    iterations: saves(4, { 19: 0.7, 39: 0.2, 59: 0.3 }),
    tracker: 79,
    keepLast: 2,
    keepBest: 1,
  };
  const now = planRetention(input);
  assert.deepEqual(now.delete, [39]);
  // after 99 is saved: the last two are 79 and 99, 19 stays the best, so 59 goes
  assert.deepEqual(planNextDeletion({ ...input, saveInterval: 20 }, now), [59]);
  // a partial directory newer than the tracker is cleaned once the next complete checkpoint exists
  const partial = { ...input, iterations: [...input.iterations, { iteration: 81, complete: false }] };
  const withPartial = planRetention(partial);
  assert.deepEqual(withPartial.delete, [39]);
  assert.deepEqual(planNextDeletion({ ...partial, saveInterval: 20 }, withPartial), [59, 81]);
  // ... but not a partial directory the next save writes over
  const overwritten = { ...input, iterations: [...input.iterations, { iteration: 99, complete: false }] };
  assert.deepEqual(planNextDeletion({ ...overwritten, saveInterval: 20 }, planRetention(overwritten)), [59]);
  // nothing to delete when every checkpoint is kept
  assert.deepEqual(
    planNextDeletion({ ...input, keepLast: 10, saveInterval: 20 }, planRetention({ ...input, keepLast: 10 })),
    [],
  );
  assert.throws(() => planNextDeletion({ ...input, saveInterval: 0 }, now), /saveInterval/);
});
