// The retention activity on a real save directory: what it deletes, what it keeps, and what it names as next.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { trainingActivities } from '../../activities/training.js';
import { resolveSpecOrThrow } from '../../src/spec/index.js';

let save: string;
before(async () => {
  save = await mkdtemp(path.join(os.tmpdir(), 'keel-retention-'));
});
after(async () => {
  await rm(save, { recursive: true, force: true });
});

const iterDir = (iteration: number) => path.join(save, `iter_${String(iteration).padStart(7, '0')}`);

async function checkpoint(iteration: number, finished = true) {
  const dir = iterDir(iteration);
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, '__0_0.distcp'), 'x');
  await writeFile(path.join(dir, 'common.pt'), 'x');
  await writeFile(path.join(dir, 'metadata.json'), JSON.stringify({ sharded_backend: 'torch_dist' }));
  if (finished) await writeFile(path.join(dir, '.metadata'), 'x');
}

test('deletes what the policy drops, keeps the tracker, best and a partial save, and names the next deletions', async () => {
  for (const iteration of [19, 39, 59, 79]) await checkpoint(iteration);
  await checkpoint(99, false); // a save in progress (the tracker still names 79)
  await writeFile(path.join(save, 'latest_checkpointed_iteration.txt'), '79');
  const spec = resolveSpecOrThrow({
    preset: 'tiny-local',
    overrides: { ckpt: { save }, policies: { retention: { keepLast: 2, keepBest: 1 } } },
  });
  const { applyRetention } = trainingActivities({ cwd: process.cwd(), env: process.env });
  const result: Awaited<ReturnType<typeof applyRetention>> = await new MockActivityEnvironment().run(applyRetention, {
    spec,
    scores: [
      { rollout: 19, score: 0.7 },
      { rollout: 39, score: 0.2 },
      { rollout: 59, score: 0.3 },
      { rollout: 79, score: 0.25 },
    ],
  });
  assert.deepEqual(result.deleted, [39]);
  assert.deepEqual(result.keep, [19, 59, 79, 99]);
  assert.deepEqual(result.deleteNext, [59]);
  const left = (await readdir(save)).filter((name) => name.startsWith('iter_')).sort();
  assert.deepEqual(left, ['iter_0000019', 'iter_0000059', 'iter_0000079', 'iter_0000099']);
  assert.deepEqual(await readdir(iterDir(99)), ['__0_0.distcp', 'common.pt', 'metadata.json'].sort());
});

test('deletes file by file with a heartbeat after each; a retry finishes a deletion an interrupted attempt began', async () => {
  await rm(save, { recursive: true, force: true });
  for (const iteration of [9, 19, 29]) await checkpoint(iteration);
  await mkdir(path.join(iterDir(9), 'nested'), { recursive: true });
  await writeFile(path.join(iterDir(9), 'nested', 'shard'), 'x');
  await writeFile(path.join(save, 'latest_checkpointed_iteration.txt'), '29');
  // An earlier attempt renamed iter 5 out of the checkpoints and was interrupted while emptying it.
  await mkdir(path.join(save, 'iter_0000005.keel-deleting', 'deep'), { recursive: true });
  await writeFile(path.join(save, 'iter_0000005.keel-deleting', 'deep', '__1_0.distcp'), 'x');
  const spec = resolveSpecOrThrow({
    preset: 'tiny-local',
    overrides: { ckpt: { save }, policies: { retention: { keepLast: 1, keepBest: 0 } } },
  });
  const { applyRetention } = trainingActivities({ cwd: process.cwd(), env: process.env });
  const env = new MockActivityEnvironment();
  const beats: { deleting: string; filesDeleted: number }[] = [];
  env.on('heartbeat', (details: { deleting: string; filesDeleted: number }) => beats.push(details));
  const result: Awaited<ReturnType<typeof applyRetention>> = await env.run(applyRetention, { spec, scores: [] });
  assert.deepEqual(result.deleted, [9, 19]);
  assert.deepEqual(result.keep, [29]);
  assert.deepEqual((await readdir(save)).sort(), ['iter_0000029', 'latest_checkpointed_iteration.txt']);
  // iter 5's leftovers (2 entries), iter 9 (6: five files and a directory), iter 19 (4): one heartbeat each.
  assert.equal(beats.length, 12);
  assert.deepEqual(
    beats.map((b) => b.filesDeleted),
    Array.from({ length: 12 }, (_, i) => i + 1),
  );
  assert.ok(beats[0]!.deleting.endsWith('iter_0000005.keel-deleting'));
  assert.ok(beats.at(-1)!.deleting.endsWith('iter_0000019.keel-deleting'));

  // Run again: nothing left to delete, the tracker's checkpoint stays.
  const again: Awaited<ReturnType<typeof applyRetention>> = await new MockActivityEnvironment().run(applyRetention, {
    spec,
    scores: [],
  });
  assert.deepEqual(again.deleted, []);
  assert.deepEqual(await readdir(iterDir(29)), ['.metadata', '__0_0.distcp', 'common.pt', 'metadata.json']);
});

test('never deletes the promoted checkpoint; a promoted.json that names none stops every deletion', async () => {
  await rm(save, { recursive: true, force: true });
  for (const iteration of [9, 19, 29, 39]) await checkpoint(iteration);
  await writeFile(path.join(save, 'latest_checkpointed_iteration.txt'), '39');
  const spec = resolveSpecOrThrow({
    preset: 'tiny-local',
    overrides: { ckpt: { save }, policies: { retention: { keepLast: 1 } } },
  });
  const { applyRetention } = trainingActivities({ cwd: process.cwd(), env: process.env });
  const run = (): Promise<Awaited<ReturnType<typeof applyRetention>>> =>
    new MockActivityEnvironment().run(applyRetention, { spec, scores: [] });
  // a retraining round promoted 9 (its eval score is not among this run's): keepLast 1 alone would delete it
  await writeFile(path.join(save, 'promoted.json'), JSON.stringify({ iteration: 9, score: 0.5, history: [] }));
  let result = await run();
  assert.deepEqual(result.keep, [9, 39]);
  assert.deepEqual(result.deleted, [19, 29]);
  assert.ok(!result.deleteNext.includes(9), 'nor next time');
  // a damaged promoted.json: nothing is deleted until it names a checkpoint again
  await checkpoint(49);
  await writeFile(path.join(save, 'latest_checkpointed_iteration.txt'), '49');
  await writeFile(path.join(save, 'promoted.json'), '{"iteration": "nine"');
  result = await run();
  assert.deepEqual(result.deleted, []);
  const left = (await readdir(save)).filter((name) => name.startsWith('iter_')).sort();
  assert.deepEqual(left, ['iter_0000009', 'iter_0000039', 'iter_0000049']);
});

test('a save dir the worker cannot read is an error naming it, never "no checkpoints"', async () => {
  const notADir = path.join(await mkdtemp(path.join(os.tmpdir(), 'keel-retention-')), 'save');
  await writeFile(notADir, 'a file where the save dir should be'); // readdir fails with ENOTDIR, as on a stale mount
  const spec = resolveSpecOrThrow({ preset: 'tiny-local', overrides: { ckpt: { save: notADir } } });
  const { applyRetention } = trainingActivities({ cwd: process.cwd(), env: process.env });
  await assert.rejects(new MockActivityEnvironment().run(applyRetention, { spec, scores: [] }), (error: Error) =>
    error.message.startsWith(`retention cannot read the save dir ${notADir} on the keel worker`),
  );
  await rm(path.dirname(notADir), { recursive: true, force: true });
});
