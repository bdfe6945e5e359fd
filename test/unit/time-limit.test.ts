import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { stopForTimeLimit } from '../../src/cluster/time-limit.js';

describe('stopping for the allocation time limit', () => {
  const now = Date.parse('2026-12-07T12:00:00Z');
  const endsIn = (s: number) => new Date(now + s * 1000).toISOString();

  it('stops when the next checkpoint and the stop do not fit before the end', () => {
    const d = stopForTimeLimit({ now, endsAt: endsIn(100), intervalMs: 60_000, marginMs: 45_000 });
    assert.equal(d.stop, true);
    assert.match(d.why, /100 s left; the next checkpoint needs about 60 s and stopping 45 s/);
  });

  it('goes on when they fit, exactly too', () => {
    assert.equal(stopForTimeLimit({ now, endsAt: endsIn(105), intervalMs: 60_000, marginMs: 45_000 }).stop, false);
    assert.equal(stopForTimeLimit({ now, endsAt: endsIn(3600), intervalMs: 60_000, marginMs: 600_000 }).stop, false);
  });

  it('never stops without a limit, and stops at once past the end', () => {
    assert.equal(stopForTimeLimit({ now, intervalMs: 1e9, marginMs: 1e9 }).stop, false);
    assert.equal(stopForTimeLimit({ now, endsAt: endsIn(-5), intervalMs: 0, marginMs: 0 }).stop, true);
  });
});
