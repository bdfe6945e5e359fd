// Spec values that reach Temporal's SDK options: the schema accepts a spec exactly when the SDK accepts every activity
// option keel builds from it (workflows/options.ts) -- the retry policies (compiled by the SDK's own
// compileRetryPolicy, which refuses an initial interval longer than the maximum) and the timeouts (parsed by the SDK's
// own duration parser). The SDK refuses them at every schedule of the activity, so a spec it would refuse must never
// start a run. fast-check draws the policies over the schema's ranges and beyond (seeded: a failure is reproducible).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { compileRetryPolicy, type RetryPolicy } from '@temporalio/common';
import { msOptionalToTs } from '@temporalio/common/lib/time.js';
import type { ActivityOptions } from '@temporalio/workflow';
import * as options from '../../workflows/options.js';
import { presets, resolveSpecInput, resolveSpecOrThrow, type Spec } from '../../src/spec/index.js';
import { durationMs } from '../../src/spec/duration.js';

const seed = 20261207;
const base = resolveSpecOrThrow({ preset: 'tiny-local' });

/** Every set of activity options keel builds for a spec, by name. */
function optionsFor(spec: Spec): [string, ActivityOptions][] {
  return Object.entries(options).map(([name, made]) => [
    name,
    typeof made === 'function' ? (made as (s: Spec) => ActivityOptions)(spec) : (made as ActivityOptions),
  ]);
}

/** What the SDK refuses in these options (its own code), or undefined. */
function sdkRefusal(spec: Spec): string | undefined {
  for (const [name, o] of optionsFor(spec)) {
    try {
      if (o.retry) compileRetryPolicy(o.retry as RetryPolicy);
      for (const t of [o.startToCloseTimeout, o.scheduleToCloseTimeout, o.scheduleToStartTimeout, o.heartbeatTimeout]) {
        msOptionalToTs(t);
      }
    } catch (error) {
      return `${name}: ${(error as Error).message}`;
    }
  }
  return undefined;
}

const units = ['ms', 's', 'm', 'h', 'd'] as const;
/** A duration in keel's grammar between `minMs` and `maxMs`, in any unit, sometimes with a fraction or leading zeros. */
const durationIn = (minMs: number, maxMs: number) =>
  fc
    .tuple(
      fc.integer({ min: minMs, max: maxMs }),
      fc.constantFrom(...units),
      fc.boolean(),
      fc.oneof({ arbitrary: fc.constant(0), weight: 6 }, { arbitrary: fc.integer({ min: 1, max: 120 }), weight: 1 }),
    )
    .map(([ms, unit, fraction, zeros]) => {
      const perUnit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[unit];
      const n = fraction ? Number((ms / perUnit).toFixed(3)) : Math.max(1, Math.round(ms / perUnit));
      return `${'0'.repeat(zeros)}${n}${unit}`;
    })
    // keel's own floors are not the SDK's concern: stay at or above them
    .filter((text) => durationMs(text) >= minMs);

const day = 86_400_000;
/** policies.* over the schema's ranges before keel 0.5 (initialRetryInterval up to 1d) and heartbeats up to 1d. */
const policies = fc.record({
  initialRetryInterval: fc.oneof(durationIn(100, 3 * 60_000), durationIn(100, 2 * day)),
  heartbeatTimeout: durationIn(1000, day),
});

describe('spec values that reach the SDK options', () => {
  it('the schema accepts a spec exactly when the SDK accepts every activity option built from it', () => {
    let accepted = 0;
    let refused = 0;
    fc.assert(
      fc.property(policies, (drawn) => {
        const result = resolveSpecInput({ preset: 'tiny-local', overrides: { policies: drawn } });
        // the same values, unchecked by the schema, in options the SDK compiles
        const unchecked = { ...base, policies: { ...base.policies, ...drawn } } as Spec;
        const refusal = sdkRefusal(unchecked);
        if (result.ok) {
          accepted++;
          assert.equal(refusal, undefined, `accepted by the schema, refused by the SDK: ${refusal}`);
          assert.equal(sdkRefusal(result.spec), undefined);
        } else {
          refused++;
          assert.ok(refusal, `refused by the schema, accepted by the SDK: ${JSON.stringify(result.problems)}`);
          for (const p of result.problems) {
            assert.match(p.path, /^policies\.(initialRetryInterval|heartbeatTimeout)$/);
            assert.match(p.message, /must be at most|at most \d+ characters/);
          }
        }
      }),
      { seed, numRuns: 400 },
    );
    // both sides were drawn often enough to mean something
    assert.ok(accepted > 50 && refused > 50, `accepted ${accepted}, refused ${refused}`);
  });

  it('policies.initialRetryInterval=1d is refused naming the field, the bound and the fix', () => {
    const result = resolveSpecInput({ preset: 'tiny-local', overrides: { policies: { initialRetryInterval: '1d' } } });
    assert.equal(result.ok, false);
    const [problem] = result.ok ? [] : result.problems;
    assert.equal(problem?.path, 'policies.initialRetryInterval');
    assert.match(problem!.message, /must be at most 2m .*refuse a first interval longer .*set a shorter one/);
    // and the preset's own value is within it
    assert.ok(durationMs(presets['tiny-local'].policies?.initialRetryInterval ?? '10s') <= 2 * 60_000);
  });
});
