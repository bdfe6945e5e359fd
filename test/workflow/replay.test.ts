// Replay: every committed history (test/histories/*.binpb, binary protobuf) must replay without non-determinism against the current
// workflow code. A change that must behave differently on replay needs `patched()`.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { Worker } from '@temporalio/worker';
import proto from '@temporalio/proto';
import { repoRoot, workflowBundle } from '../support/temporal.js';

describe('replay of recorded workflow histories', () => {
  it('replays every history in test/histories', async () => {
    const dir = `${repoRoot}test/histories`;
    const files = (await readdir(dir)).filter((f) => f.endsWith('.binpb'));
    assert.ok(files.length >= 1, 'no histories recorded');
    const histories = await Promise.all(
      files.map(async (f) => ({
        workflowId: f,
        history: proto.temporal.api.history.v1.History.decode(await readFile(`${dir}/${f}`)),
      })),
    );
    const results = [];
    for await (const result of Worker.runReplayHistories({ workflowBundle: await workflowBundle() }, histories)) {
      results.push(result);
    }
    assert.equal(results.length, files.length);
    for (const r of results) assert.equal(r.error, undefined, `${r.workflowId}: ${String(r.error)}`);
  });
});
