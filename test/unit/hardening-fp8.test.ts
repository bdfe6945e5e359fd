// Hostile and careless checkpoints given to the native FP8 cast and its completeness check: symlinks and odd files in
// the output directory, tensors named like object properties, zero-size tensors, shards that are not regular files,
// index files naming paths outside the directory. Each gets an error naming the file (and the tensor) or a correct
// result; nothing outside the directories is read or written (checked on the file system).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { castFp8Checkpoint, checkFp8CastComplete, indexFileName, readHeader } from '../../src/fp8/index.js';
import { fp8Weight, plainTensor, shardName, writeCheckpoint, writeSafetensors } from '../support/fp8-checkpoint.js';

const roots: string[] = [];
after(async () => {
  await Promise.all(roots.map((root) => rm(root, { recursive: true, force: true })));
});

async function workspace(): Promise<{ root: string; input: string; output: string; outside: string }> {
  const root = await mkdtemp(join(tmpdir(), 'keel-hardening-fp8-'));
  roots.push(root);
  const [input, output, outside] = [join(root, 'in'), join(root, 'out'), join(root, 'outside')];
  await mkdir(output);
  await mkdir(outside);
  return { root, input, output, outside };
}

async function smallCheckpoint(dir: string): Promise<void> {
  const [w, s] = fp8Weight('model.layers.0.mlp.down_proj.weight', 130, 200);
  await writeCheckpoint(dir, { [shardName(1, 1)]: [w, s, plainTensor('model.norm.weight', 'BF16', [16])] });
}

const castQuietly = (inputDir: string, outputDir: string, extra: Record<string, unknown> = {}) =>
  castFp8Checkpoint({ inputDir, outputDir, threads: 1, directIo: false, ...extra });

describe('row 5: the cast never writes through a symlink or over a non-regular file in the output directory', () => {
  for (const [name, options] of [
    ['tokenizer.json', {}],
    ['config.json', { keepQuantizationConfig: true }],
    ['config.json', {}],
    [shardName(1, 1), {}],
    [indexFileName, {}],
    ['.keel-fp8-cast.json', {}],
  ] as const) {
    it(`${name} -> a file elsewhere${Object.keys(options).length ? ' (--keep-quantization-config)' : ''}`, async () => {
      const { input, output, outside } = await workspace();
      await smallCheckpoint(input);
      const target = join(outside, 'precious.txt');
      await writeFile(target, 'keep me\n');
      await symlink(target, join(output, name));
      await assert.rejects(
        castQuietly(input, output, options),
        (error: Error) => error.message.includes(join(output, name)) && /is a symlink/.test(error.message),
      );
      assert.equal(await readFile(target, 'utf8'), 'keep me\n', 'the file outside is untouched');
      assert.equal(await readlink(join(output, name)), target, 'the symlink itself is left as it was');
      if (name !== indexFileName)
        await assert.rejects(lstat(join(output, indexFileName)), /ENOENT/, 'no index written');
    });
  }
  it('a directory or a FIFO under a shard name is refused, not replaced', async () => {
    const { input, output } = await workspace();
    await smallCheckpoint(input);
    await mkdir(join(output, shardName(1, 1)));
    await assert.rejects(castQuietly(input, output), /is a directory: the cast writes a regular file/);
    await rm(join(output, shardName(1, 1)), { recursive: true });
    execFileSync('mkfifo', [join(output, 'tokenizer.json')]);
    await assert.rejects(castQuietly(input, output), /tokenizer\.json is not a regular file/);
  });
  it('a symlinked temporary name (.partial) is removed, never written through', async () => {
    const { input, output, outside } = await workspace();
    await smallCheckpoint(input);
    const target = join(outside, 'victim.bin');
    await writeFile(target, 'keep me\n');
    await symlink(target, join(output, `.${shardName(1, 1)}.partial`));
    await assert.rejects(castQuietly(input, output), /\.partial is a symlink/);
    assert.equal(await readFile(target, 'utf8'), 'keep me\n');
  });
  it('a regular file from an earlier cast is replaced as before (variant: the safe case still works)', async () => {
    const { input, output } = await workspace();
    await smallCheckpoint(input);
    await writeFile(join(output, 'tokenizer.json'), 'stale');
    await castQuietly(input, output);
    assert.equal(await readFile(join(output, 'tokenizer.json'), 'utf8'), '{"version": "1.0"}');
    assert.deepEqual(await checkFp8CastComplete(input, output), { complete: true });
  });
});

/** An index written by hand: JSON text, so a key `__proto__` is a key like any other. */
async function writeIndex(dir: string, entries: [string, string][]): Promise<void> {
  const body = entries.map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`).join(', ');
  await writeFile(join(dir, indexFileName), `{"metadata": {}, "weight_map": {${body}}}`);
}

describe('row 6: tensors named like object properties', () => {
  for (const name of ['__proto__', 'constructor', 'toString', 'hasOwnProperty']) {
    it(`a tensor named ${name} is cast, written to the header and the index, and checked`, async () => {
      const { input, output } = await workspace();
      await mkdir(input);
      const shard = shardName(1, 1);
      const [w, s] = fp8Weight(name, 128, 128);
      const plain = plainTensor('model.norm.weight', 'BF16', [8]);
      await writeSafetensors(join(input, shard), [w, s, plain]);
      await writeIndex(input, [
        [name, shard],
        [`${name}_scale_inv`, shard],
        ['model.norm.weight', shard],
      ]);
      await castQuietly(input, output, { verify: true });
      const header = await readHeader(join(output, shard));
      assert.deepEqual([...header.tensors.keys()].sort(), [name, 'model.norm.weight'].sort());
      assert.deepEqual(header.tensors.get(name)?.shape, [128, 128]);
      const index = await readFile(join(output, indexFileName), 'utf8');
      assert.ok(index.includes(`${JSON.stringify(name)}: ${JSON.stringify(shard)}`), index);
      assert.deepEqual(await checkFp8CastComplete(input, output), { complete: true });
      // Python's reference reader agrees that the file is valid (it refused the output before the fix).
      const python = join(process.cwd(), '.venv', 'bin', 'python3');
      const keys = execFileSync(python, [
        '-c',
        'import sys; from safetensors import safe_open; f = safe_open(sys.argv[1], "np"); print(sorted(f.keys()))',
        join(output, shard),
      ]).toString();
      assert.ok(keys.includes(`'${name}'`), keys);
    });
  }
  it('variant: an output index that leaves out a tensor its shard holds is not complete', async () => {
    const { input, output } = await workspace();
    await smallCheckpoint(input);
    await castQuietly(input, output);
    const index = JSON.parse(await readFile(join(output, indexFileName), 'utf8')) as { weight_map: object };
    const { 'model.norm.weight': _dropped, ...rest } = index.weight_map as Record<string, string>;
    await writeFile(join(output, indexFileName), JSON.stringify({ weight_map: rest }));
    const r = await checkFp8CastComplete(input, output);
    assert.equal(r.complete, false);
    assert.match(r.reason!, /holds tensor "model\.norm\.weight", which the output index does not place there/);
  });
});

describe('row 7: zero-size tensors', () => {
  for (const [rows, columns] of [
    [128, 0],
    [0, 128],
    [0, 0],
  ] as const) {
    it(`an FP8 weight [${rows},${columns}] with its scale is cast to an empty BF16 tensor`, async () => {
      const { input, output } = await workspace();
      const [w, s] = fp8Weight('empty.weight', rows, columns);
      assert.deepEqual(s.shape, [Math.ceil(rows / 128), Math.ceil(columns / 128)]);
      const [w2, s2] = fp8Weight('full.weight', 130, 140);
      await writeCheckpoint(input, { [shardName(1, 1)]: [w, s, w2, s2] });
      await castQuietly(input, output, { verify: true });
      const header = await readHeader(join(output, shardName(1, 1)));
      const empty = header.tensors.get('empty.weight')!;
      assert.equal(empty.dtype, 'BF16');
      assert.deepEqual(empty.shape, [rows, columns]);
      assert.equal(empty.end - empty.begin, 0);
      assert.deepEqual(await checkFp8CastComplete(input, output), { complete: true });
    });
  }
});

describe('row 8: shards that are not regular files', () => {
  it('a directory is named as one', async () => {
    const { input, output } = await workspace();
    await smallCheckpoint(input);
    await rm(join(input, shardName(1, 1)));
    await mkdir(join(input, shardName(1, 1)));
    await assert.rejects(castQuietly(input, output), (error: Error) => {
      assert.match(error.message, new RegExp(`${shardName(1, 1)} is a directory: a shard must be a regular file`));
      assert.ok(error.message.includes(input));
      return true;
    });
  });
  it('a FIFO is refused at once instead of waited on', async () => {
    const { input, output } = await workspace();
    await smallCheckpoint(input);
    await rm(join(input, shardName(1, 1)));
    execFileSync('mkfifo', [join(input, shardName(1, 1))]);
    const started = Date.now();
    await assert.rejects(castQuietly(input, output), /is a FIFO: a shard must be a regular file/);
    assert.ok(Date.now() - started < 30_000);
    const r = await checkFp8CastComplete(input, output);
    assert.equal(r.complete, false);
  });
  it('variant: the completeness check names a FIFO in the output instead of hanging', async () => {
    const { input, output } = await workspace();
    await smallCheckpoint(input);
    await castQuietly(input, output);
    await rm(join(output, shardName(1, 1)));
    execFileSync('mkfifo', [join(output, shardName(1, 1))]);
    const r = await checkFp8CastComplete(input, output);
    assert.equal(r.complete, false);
    assert.match(r.reason!, /is a FIFO/);
  });
});

describe('row 9: index files from outside', () => {
  it("an input index naming '../../../../etc/passwd' is refused and the file outside is never opened", async () => {
    const { input, output, outside } = await workspace();
    await smallCheckpoint(input);
    await castQuietly(input, output);
    // A file outside that would pass as a shard if it were opened: its name reaches it from the output directory.
    await writeSafetensors(join(outside, 'bait.safetensors'), [plainTensor('x', 'BF16', [2])]);
    for (const shard of ['../outside/bait.safetensors', '/etc/passwd', '../../../../etc/passwd', '.', 'a\nb']) {
      await writeIndex(input, [['x', shard]]);
      const r = await checkFp8CastComplete(input, output);
      assert.equal(r.complete, false, shard);
      assert.match(r.reason!, /names a shard .* refused/, shard);
      await assert.rejects(castQuietly(input, output), /names a shard .* refused/);
    }
  });
  it('an output index {} (or with a weight_map that is not a map) is incomplete, not a TypeError', async () => {
    const { input, output } = await workspace();
    await smallCheckpoint(input);
    await castQuietly(input, output);
    for (const text of ['{}', '[]', 'null', '{"weight_map": [1]}', '{"weight_map": {"a": 1}}']) {
      await writeFile(join(output, indexFileName), text);
      const r = await checkFp8CastComplete(input, output);
      assert.equal(r.complete, false, text);
      assert.match(r.reason!, /has no weight_map of tensor -> shard file/, text);
    }
  });
});
