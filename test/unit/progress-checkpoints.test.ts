import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  checkResume,
  checkTorchDistRelease,
  CheckpointTrackerError,
  completeIterationsBetween,
  inspectSaveDir,
  readTracker,
} from '../../src/progress/checkpoints.js';

let root: string;
let counter = 0;
before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'keel-ckpt-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

async function freshDir(): Promise<string> {
  const dir = path.join(root, `case-${(counter += 1)}`);
  await mkdir(dir, { recursive: true });
  return dir;
}

/** What Megatron's torch_dist save leaves in a finished checkpoint directory. */
async function writeTorchDist(dir: string, options: { finished?: boolean; shards?: number; backend?: string } = {}) {
  await mkdir(dir, { recursive: true });
  for (let rank = 0; rank < (options.shards ?? 2); rank += 1)
    await writeFile(path.join(dir, `__${rank}_0.distcp`), 'x');
  await writeFile(path.join(dir, 'common.pt'), 'x');
  await writeFile(
    path.join(dir, 'metadata.json'),
    JSON.stringify({ sharded_backend: options.backend ?? 'torch_dist', sharded_backend_version: 1 }),
  );
  await writeFile(path.join(dir, options.finished === false ? '.metadata.tmp' : '.metadata'), 'x');
}

/** A training save dir after saves at rollout ids 19 and 39 (tracker 39). */
async function savedTwice(): Promise<string> {
  const save = await freshDir();
  await writeTorchDist(path.join(save, 'iter_0000019'));
  await writeTorchDist(path.join(save, 'iter_0000039'));
  await mkdir(path.join(save, 'rollout'));
  await writeFile(path.join(save, 'rollout', 'global_dataset_state_dict_19.pt'), 'x');
  await writeFile(path.join(save, 'rollout', 'global_dataset_state_dict_39.pt'), 'x');
  await writeFile(path.join(save, 'latest_checkpointed_iteration.txt'), '39');
  return save;
}

describe('readTracker', () => {
  test('reads an iteration, release, nothing, or refuses garbage', async () => {
    const dir = await freshDir();
    assert.equal(await readTracker(dir), undefined);
    assert.equal(await readTracker(path.join(dir, 'missing')), undefined);
    const tracker = path.join(dir, 'latest_checkpointed_iteration.txt');
    await writeFile(tracker, '');
    assert.equal(await readTracker(dir), undefined);
    await writeFile(tracker, '2999\n');
    assert.equal(await readTracker(dir), 2999);
    await writeFile(tracker, 'release');
    assert.equal(await readTracker(dir), 'release');
    await writeFile(tracker, '19abc');
    await assert.rejects(readTracker(dir), CheckpointTrackerError);
  });
});

describe('completeIterationsBetween', () => {
  test('every complete checkpoint after the last recorded one, up to the tracker', async () => {
    const save = await savedTwice();
    // a poll that saw neither save finds both; one that saw 19 finds 39 only
    assert.deepEqual(await completeIterationsBetween(save, -1, 39), [19, 39]);
    assert.deepEqual(await completeIterationsBetween(save, 19, 39), [39]);
    // a save in progress past the tracker and a damaged one below it are not reported
    await writeTorchDist(path.join(save, 'iter_0000059'), { finished: false });
    await rm(path.join(save, 'iter_0000019', '.metadata'));
    assert.deepEqual(await completeIterationsBetween(save, -1, 39), [39]);
  });
});

describe('inspectSaveDir', () => {
  test('complete checkpoints named by the tracker, with their dataset states', async () => {
    const save = await savedTwice();
    const inspection = await inspectSaveDir(save);
    assert.equal(inspection.tracker, 39);
    assert.deepEqual(
      inspection.iterations.map(({ iteration, complete, named }) => ({ iteration, complete, named })),
      [
        { iteration: 19, complete: true, named: true },
        { iteration: 39, complete: true, named: true },
      ],
    );
    assert.equal(inspection.iterations[1]?.dir, path.join(save, 'iter_0000039'));
    assert.deepEqual(inspection.datasetStates, [19, 39]);
    assert.deepEqual(inspection.partial, []);
  });

  test('a crash mid-save leaves a partial iter_ dir the tracker never named', async () => {
    const save = await savedTwice();
    await writeTorchDist(path.join(save, 'iter_0000059'), { finished: false });
    const inspection = await inspectSaveDir(save);
    assert.deepEqual(inspection.partial, [59]);
    const partial = inspection.iterations.find((it) => it.iteration === 59);
    assert.equal(partial?.complete, false);
    assert.equal(partial?.named, false);
    assert.match(partial?.reason ?? '', /not named by the tracker \(39\)/);
    // Even a save that wrote every file is partial until the tracker names it.
    await writeTorchDist(path.join(save, 'iter_0000079'));
    assert.deepEqual((await inspectSaveDir(save)).partial, [59, 79]);
  });

  test('a named checkpoint with files missing is not complete, and says why', async () => {
    const save = await savedTwice();
    await rm(path.join(save, 'iter_0000019', '__0_0.distcp'));
    await rm(path.join(save, 'iter_0000019', '__1_0.distcp'));
    const inspection = await inspectSaveDir(save);
    const damaged = inspection.iterations.find((it) => it.iteration === 19);
    assert.equal(damaged?.named, true);
    assert.equal(damaged?.complete, false);
    assert.match(damaged?.reason ?? '', /no __\*_\*\.distcp shard/);
  });

  test('an empty or missing save dir has no tracker and no checkpoint', async () => {
    const empty = await freshDir();
    assert.deepEqual(await inspectSaveDir(empty), {
      tracker: undefined,
      iterations: [],
      datasetStates: [],
      partial: [],
    });
    assert.deepEqual(await inspectSaveDir(path.join(empty, 'nope')), {
      tracker: undefined,
      iterations: [],
      datasetStates: [],
      partial: [],
    });
  });

  test('without a tracker every iter_ dir is partial', async () => {
    const save = await freshDir();
    await writeTorchDist(path.join(save, 'iter_0000019'));
    assert.deepEqual((await inspectSaveDir(save)).partial, [19]);
  });
});

describe('checkTorchDistRelease', () => {
  async function converted(): Promise<string> {
    const dir = await freshDir();
    await writeTorchDist(path.join(dir, 'release'), { shards: 4 });
    await writeFile(path.join(dir, 'latest_checkpointed_iteration.txt'), 'release');
    return dir;
  }

  test('a finished conversion is complete', async () => {
    assert.deepEqual(await checkTorchDistRelease(await converted()), {
      complete: true,
      reason: 'complete',
      problems: [],
    });
  });

  test('each way a conversion can be unfinished is reported', async () => {
    const cases: [string, (dir: string) => Promise<unknown>, RegExp][] = [
      [
        'tracker still 1',
        (dir) => writeFile(path.join(dir, 'latest_checkpointed_iteration.txt'), '1'),
        /tracker reads 1, not release/,
      ],
      ['no tracker', (dir) => rm(path.join(dir, 'latest_checkpointed_iteration.txt')), /tracker reads nothing/],
      [
        'metadata being written',
        (dir) => writeFile(path.join(dir, 'release', '.metadata.tmp'), 'x'),
        /\.metadata\.tmp is present/,
      ],
      ['no .metadata', (dir) => rm(path.join(dir, 'release', '.metadata')), /\.metadata is missing/],
      [
        'no shards',
        async (dir) => {
          for (let rank = 0; rank < 4; rank += 1) await rm(path.join(dir, 'release', `__${rank}_0.distcp`));
        },
        /no __\*_\*\.distcp shard/,
      ],
      [
        'another backend',
        (dir) => writeFile(path.join(dir, 'release', 'metadata.json'), JSON.stringify({ sharded_backend: 'zarr' })),
        /sharded_backend torch_dist/,
      ],
      [
        'metadata.json unreadable',
        (dir) => writeFile(path.join(dir, 'release', 'metadata.json'), '{'),
        /sharded_backend/,
      ],
      ['iter_0000001 not renamed', (dir) => mkdir(path.join(dir, 'iter_0000001')), /iter_0000001\/ is still present/],
      ['no release dir', (dir) => rm(path.join(dir, 'release'), { recursive: true }), /release\/ is missing/],
    ];
    for (const [name, breakIt, expected] of cases) {
      const dir = await converted();
      await breakIt(dir);
      const check = await checkTorchDistRelease(dir);
      assert.equal(check.complete, false, name);
      assert.match(check.reason, expected, name);
    }
  });

  test('a crash before the rename: iter_0000001 and tracker 1, no release', async () => {
    const dir = await freshDir();
    await writeTorchDist(path.join(dir, 'iter_0000001'));
    await writeFile(path.join(dir, 'latest_checkpointed_iteration.txt'), '1');
    const check = await checkTorchDistRelease(dir);
    assert.equal(check.complete, false);
    assert.equal(check.problems.length, 3);
  });
});

describe('checkResume', () => {
  test('resuming at tracker + 1 with the dataset state is ok', async () => {
    const save = await savedTwice();
    assert.deepEqual(await checkResume(save, 39, 40), { ok: true });
  });

  test('a rollout loop restarted at 0 is a resume mismatch', async () => {
    const save = await savedTwice();
    const check = await checkResume(save, 39, 0);
    assert.equal(check.ok, false);
    assert.match(check.ok ? '' : check.reason, /first rollout logged is 0, expected 40 \(tracker 39\)/);
  });

  test('a missing dataset state is reported (slime would silently restart the data)', async () => {
    const save = await savedTwice();
    await rm(path.join(save, 'rollout', 'global_dataset_state_dict_39.pt'));
    const check = await checkResume(save, 39, 40);
    assert.equal(check.ok, false);
    assert.match(check.ok ? '' : check.reason, /global_dataset_state_dict_39\.pt is missing/);
  });

  test('without a tracker training starts at 0', async () => {
    const save = await freshDir();
    assert.deepEqual(await checkResume(save, undefined, 0), { ok: true });
    assert.equal((await checkResume(save, undefined, 20)).ok, false);
  });
});
