// Hardening round 2, shared storage: a writer of the save dir or a model directory plants symlinks, FIFOs and stray
// names. keel's one writer, reader and deleter (src/storage) must never write or delete through a symlink, never block
// on a FIFO, and never take a stray name for a checkpoint. Each case is asserted on the file system.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { promotionActivities } from '../../activities/promotion.js';
import { trainingActivities } from '../../activities/training.js';
import { checkFp8CastComplete, indexFileName } from '../../src/fp8/index.js';
import { planCast } from '../../src/fp8/plan.js';
import { manifestName, readManifest, writeManifest } from '../../src/hub/index.js';
import { inspectSaveDir, readTracker } from '../../src/progress/checkpoints.js';
import { resolveSpecOrThrow } from '../../src/spec/index.js';
import { readFileBounded, removeTreeIn, StorageError, writeFileSafely } from '../../src/storage/index.js';

const roots: string[] = [];
after(async () => {
  await Promise.all(roots.map((root) => rm(root, { recursive: true, force: true })));
});

async function workspace(): Promise<{ save: string; outside: string; victim: string }> {
  const root = await mkdtemp(join(tmpdir(), 'keel-hardening-storage-'));
  roots.push(root);
  const save = join(root, 'save');
  const outside = join(root, 'outside');
  await mkdir(save);
  await mkdir(outside);
  const victim = join(outside, '.bashrc');
  await writeFile(victim, 'export PS1=original\n');
  return { save, outside, victim };
}

const activities = () => ({ cwd: process.cwd(), env: process.env });
const specFor = (save: string, retention: Record<string, unknown> = {}) =>
  resolveSpecOrThrow({ preset: 'tiny-local', overrides: { ckpt: { save }, policies: { retention } } });

async function checkpoint(save: string, iteration: number, name = `iter_${String(iteration).padStart(7, '0')}`) {
  const dir = join(save, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, '__0_0.distcp'), 'x');
  await writeFile(join(dir, 'metadata.json'), JSON.stringify({ sharded_backend: 'torch_dist' }));
  await writeFile(join(dir, '.metadata'), 'x');
}

const mkfifo = (path: string) => execFileSync('mkfifo', [path]);

describe('row 2: promotion never writes through a symlink', () => {
  it('a promoted.json.tmp or promoted.json symlink is never followed; a $(...) string is not copied', async () => {
    const { save, victim } = await workspace();
    await symlink(victim, join(save, 'promoted.json.tmp'));
    const old = { iteration: 9, score: 0.1, runId: 'r', promotedAt: 'x', history: [], extra: '$(touch /tmp/pwned)' };
    await writeFile(join(save, 'promoted.json'), JSON.stringify(old));
    const { promoteIfBetter } = promotionActivities(activities());
    const spec = specFor(save);
    const first: Awaited<ReturnType<typeof promoteIfBetter>> = await new MockActivityEnvironment().run(
      promoteIfBetter,
      {
        spec,
        iteration: 19,
        score: 0.5,
        runId: 'a',
      },
    );
    assert.equal(first.promoted, true);
    assert.equal(await readFile(victim, 'utf8'), 'export PS1=original\n');
    const written = await readFile(join(save, 'promoted.json'), 'utf8');
    assert.ok(!written.includes('$('), 'strings beyond the schema are dropped');
    assert.equal((JSON.parse(written) as { iteration: number }).iteration, 19);
    // promoted.json itself replaced by a symlink to the victim: replaced, not followed
    await rm(join(save, 'promoted.json'));
    await symlink(victim, join(save, 'promoted.json'));
    await new MockActivityEnvironment().run(promoteIfBetter, { spec, iteration: 29, score: 0.9, runId: 'b' });
    assert.equal(await readFile(victim, 'utf8'), 'export PS1=original\n');
    assert.ok((await lstat(join(save, 'promoted.json'))).isFile());
    assert.deepEqual(
      (await readdir(save)).filter((n) => n.includes('keel-tmp')),
      [],
      'no temporary file left',
    );
  });
});

describe('row 2b: the download manifest never writes through a symlink', () => {
  it('a symlinked .keel-download.json is replaced, the file it pointed to untouched', async () => {
    const { save: dir, victim } = await workspace();
    await symlink(victim, join(dir, manifestName));
    await writeManifest(dir, { revision: 'main', files: [{ path: '$(id>x)', size: 1 }] });
    assert.equal(await readFile(victim, 'utf8'), 'export PS1=original\n');
    assert.ok((await lstat(join(dir, manifestName))).isFile());
  });

  it('the writer refuses nothing it should not: a plain write, then an overwrite', async () => {
    const { save } = await workspace();
    await writeFileSafely(join(save, 'a.json'), '1');
    await writeFileSafely(join(save, 'a.json'), '2');
    assert.equal(await readFile(join(save, 'a.json'), 'utf8'), '2');
    await assert.rejects(writeFileSafely(join(save, 'missing-dir', 'a.json'), '1'), (error: Error) =>
      error.message.startsWith(join(save, 'missing-dir', 'a.json')),
    );
  });
});

describe('row 3: retention never deletes outside the save dir', () => {
  it('a *.keel-deleting symlink to an outside directory is unlinked; the directory keeps every file', async () => {
    const { save, outside } = await workspace();
    for (let i = 0; i < 50; i++) await writeFile(join(outside, `keep-${i}`), 'x');
    await symlink(outside, join(save, 'iter_0000005.keel-deleting'));
    await symlink(outside, join(save, 'notes.keel-deleting'));
    await checkpoint(save, 9);
    await writeFile(join(save, 'latest_checkpointed_iteration.txt'), '9');
    const { applyRetention } = trainingActivities(activities());
    await new MockActivityEnvironment().run(applyRetention, { spec: specFor(save, { keepLast: 1 }), scores: [] });
    assert.equal((await readdir(outside)).length, 51);
    assert.ok(!(await readdir(save)).includes('iter_0000005.keel-deleting'), 'the link itself is gone');
    assert.ok((await readdir(save)).includes('notes.keel-deleting'), 'a name keel never made is not keel to delete');
  });

  it('a subdirectory swapped for a symlink while the tree is deleted: nothing outside is deleted', async () => {
    const { save, outside } = await workspace();
    for (let i = 0; i < 200; i++) await writeFile(join(outside, `keep-${i}`), 'x');
    const tree = join(save, 'iter_0000007.keel-deleting');
    for (let d = 0; d < 20; d++) {
      await mkdir(join(tree, `sub${d}`), { recursive: true });
      for (let i = 0; i < 100; i++) await writeFile(join(tree, `sub${d}`, `f${i}`), 'x');
    }
    // The attacker swaps each subdirectory for a symlink to `outside`, as fast as it can, while keel deletes.
    let swapping = true;
    const swapper = (async () => {
      while (swapping) {
        for (let d = 0; d < 20 && swapping; d++) {
          const sub = join(tree, `sub${d}`);
          await rename(sub, `${sub}.moved`).catch(() => undefined);
          await symlink(outside, sub).catch(() => undefined);
        }
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    await removeTreeIn(save, 'iter_0000007.keel-deleting').catch(() => undefined);
    swapping = false;
    await swapper;
    assert.equal((await readdir(outside)).length, 201, 'every outside file is still there');
    assert.equal(await readFile(join(outside, 'keep-0'), 'utf8'), 'x');
  });

  it('the deleter refuses a name that is not a plain entry', async () => {
    const { save } = await workspace();
    await assert.rejects(removeTreeIn(save, '../outside'), StorageError);
    await assert.rejects(removeTreeIn(save, '..'), StorageError);
  });
});

describe('row 6: no read of a file on shared storage blocks on a FIFO', { timeout: 20_000 }, () => {
  it('the cast, its check, the tracker, promoted.json, metadata.json and the manifest refuse a FIFO by path', async () => {
    const { save } = await workspace();
    const model = join(save, 'model');
    await mkdir(model);
    mkfifo(join(model, indexFileName));
    await assert.rejects(planCast(model), (error: Error) =>
      error.message.includes(`${join(model, indexFileName)}: is not a regular file (a FIFO)`),
    );
    const out = join(save, 'out');
    await mkdir(out);
    const check = await checkFp8CastComplete(model, out);
    assert.equal(check.complete, false);

    mkfifo(join(save, 'latest_checkpointed_iteration.txt'));
    await assert.rejects(readTracker(save), /latest_checkpointed_iteration\.txt: is not a regular file \(a FIFO\)/);
    await rm(join(save, 'latest_checkpointed_iteration.txt'));
    await writeFile(join(save, 'latest_checkpointed_iteration.txt'), '9');
    await mkdir(join(save, 'iter_0000009'));
    await writeFile(join(save, 'iter_0000009', '.metadata'), 'x');
    await writeFile(join(save, 'iter_0000009', '__0_0.distcp'), 'x');
    mkfifo(join(save, 'iter_0000009', 'metadata.json'));
    const inspection = await inspectSaveDir(save);
    assert.match(inspection.iterations[0]!.reason ?? '', /metadata\.json is not a regular file \(a FIFO\)/);

    mkfifo(join(save, 'promoted.json'));
    const { promoteIfBetter } = promotionActivities(activities());
    await assert.rejects(
      new MockActivityEnvironment().run(promoteIfBetter, { spec: specFor(save), iteration: 9, score: 1, runId: 'a' }),
      /promoted\.json: is not a regular file \(a FIFO\)/,
    );
    mkfifo(join(save, manifestName));
    await assert.rejects(readManifest(save), /\.keel-download\.json: is not a regular file \(a FIFO\)/);
  });

  it('a file larger than the cap is refused by path, not read', async () => {
    const { save } = await workspace();
    await writeFile(join(save, 'big'), Buffer.alloc(2048));
    await assert.rejects(
      readFileBounded(join(save, 'big'), { maxBytes: 1024 }),
      /big: is 2048 bytes, more than the 1024/,
    );
    assert.equal(await readFileBounded(join(save, 'absent')), undefined);
  });
});

describe('row 9: a stray 8-digit iter_ name is not a checkpoint', () => {
  it('retention plans, deletes and keeps only Megatron-named checkpoints; the stray one is left alone', async () => {
    const { save } = await workspace();
    for (const iteration of [9, 19, 29]) await checkpoint(save, iteration);
    await checkpoint(save, 19, 'iter_00000019');
    await writeFile(join(save, 'latest_checkpointed_iteration.txt'), '29');
    const { applyRetention } = trainingActivities(activities());
    const result: Awaited<ReturnType<typeof applyRetention>> = await new MockActivityEnvironment().run(applyRetention, {
      spec: specFor(save, { keepLast: 1, keepBest: 0 }),
      scores: [],
    });
    assert.deepEqual(result.deleted, [9, 19]);
    assert.deepEqual((await readdir(save)).filter((n) => n.startsWith('iter_')).sort(), [
      'iter_00000019',
      'iter_0000029',
    ]);
  });
});
