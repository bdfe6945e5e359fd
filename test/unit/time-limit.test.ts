import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { stopForTimeLimit } from '../../src/cluster/time-limit.js';
import { formatStatus } from '../../src/cli/commands/run.js';

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

describe('keel status of a run that went on in a new allocation', () => {
  it('shows the allocation count, the time limit of the one held, and where each allocation was left', () => {
    const text = formatStatus({
      workflowId: 'slurm-time',
      runStatus: 'RUNNING',
      pipeline: {
        name: 'slurm-time',
        phase: 'running',
        paused: false,
        steps: [],
        warnings: [],
        allocation: {
          jobName: 'keel-slurm-time',
          jobId: '2',
          state: 'held',
          endsAt: '2026-12-07T21:09:28.000Z',
          allocations: 2,
        },
      },
      training: {
        phase: 'running',
        submissions: 2,
        restarts: 0,
        numRollout: 6,
        lastRollout: 3,
        checkpoints: [{ iteration: 2, at: '2026-12-07T21:01:20.547Z', evalScore: 0.25 }],
        evals: [],
        failures: [],
        allocationEnds: [
          {
            at: '2026-12-07T21:01:20.748Z',
            allocation: '1',
            job: 'slurm-time-train-1a2b3c4d-1',
            checkpoint: 2,
            planned: true,
            why: 'the allocation ends before the next checkpoint could be saved',
          },
        ],
      },
    } as unknown as Parameters<typeof formatStatus>[0]);
    assert.match(
      text,
      /\n {2}slurm {6}job 2 \(keel-slurm-time\) held, time limit at 2026-12-07T21:09:28.000Z, allocation 2 of the run\n/,
    );
    assert.match(
      text,
      /\n {4}checkpoint 2 {2}eval 0\.250\n {4}allocation 1 left after checkpoint 2 \(time limit\) at 2026-12-07T21:01:20\.748Z/,
    );
  });
});
