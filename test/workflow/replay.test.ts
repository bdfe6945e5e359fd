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
    // keel 0.1's three-command pipeline, and keel 0.2's real runs: a pipeline whose training lost a node, healed and
    // continued as new (two runs of the training chain), and a retraining round (retrain, its pipeline, its training).
    // keel 0.3's runs of the same scenario post notifications and heal only what a failure touched (the training chain
    // holds both patches' markers). keel 0.4's runs of it write their final record to the memo and run retention
    // beside supervision (both patches' markers are in the training chain). keel 0.5's runs are steered by Updates
    // only: one paused right after its start (held until prepared), resumed and stopped after a checkpoint; one
    // cancelled while it trains; one paused by its crash-loop guard and resumed. keel 0.6's run on a local Slurm
    // cluster waited for its allocation behind another job (announced), trained, and its guard released the job.
    for (const required of [
      'pipeline-three-commands.binpb',
      'keel-0.2-pipeline.binpb',
      'keel-0.2-training-run1.binpb',
      'keel-0.2-training-run2.binpb',
      'keel-0.2-retrain.binpb',
      'keel-0.3-pipeline.binpb',
      'keel-0.3-training-run1.binpb',
      'keel-0.3-retrain-training.binpb',
      'keel-0.4-pipeline.binpb',
      'keel-0.4-training-run1.binpb',
      'keel-0.4-retrain-training.binpb',
      'keel-0.5-steering-updates-pipeline.binpb',
      'keel-0.5-steering-updates-training.binpb',
      'keel-0.5-steering-cancel-pipeline.binpb',
      'keel-0.5-steering-cancel-training.binpb',
      'keel-0.5-steering-crash-loop-pipeline.binpb',
      'keel-0.5-steering-crash-loop-training.binpb',
      'keel-0.6-slurm-pipeline.binpb',
      'keel-0.6-slurm-training.binpb',
      'keel-0.6-slurm-guard.binpb',
    ]) {
      assert.ok(files.includes(required), `${required} is committed`);
    }
    // The workflow id a history ran under (a pipeline names its training child after it); default: the file name.
    // (keel 0.2's in workflow-ids.json; each later label's in <label>.workflow-ids.json)
    const idFiles = (await readdir(dir)).filter((f) => f === 'workflow-ids.json' || f.endsWith('.workflow-ids.json'));
    const ids = Object.assign(
      {},
      ...(await Promise.all(idFiles.map(async (f) => JSON.parse(await readFile(`${dir}/${f}`, 'utf8'))))),
    ) as Record<string, string>;
    const histories = await Promise.all(
      files.map(async (f) => ({
        workflowId: Object.hasOwn(ids, f) ? ids[f]! : f,
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
