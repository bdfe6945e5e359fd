// The native cast on the tiny FP8 model (workloads/tiny/make_model.py: R1 layout, partial edge blocks, a scale in
// another shard) equals the output of the cast stand-in (workloads/tiny/tools/fp8_cast_bf16.py, PyTorch on the CPU)
// tensor for tensor, and the same shards, index and side files come out; `keel fp8-cast --verify` accepts it.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { execa } from 'execa';
import { readHeader } from '../../src/fp8/index.js';
import { ensureTestModel, python, repoRoot, tinyDir } from '../support/tiny-model.js';

const INDEX = 'model.safetensors.index.json';
let work = '';
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

test('native cast == the PyTorch stand-in, tensor for tensor, on the tiny model', async () => {
  const modelDir = await ensureTestModel();
  work = await mkdtemp(path.join(os.tmpdir(), 'keel-fp8-native-tiny-'));
  const [standIn, native] = [path.join(work, 'stand-in'), path.join(work, 'native')];
  await execa(python, [
    path.join(tinyDir, 'tools', 'fp8_cast_bf16.py'),
    '--input-fp8-hf-path',
    modelDir,
    '--output-bf16-hf-path',
    standIn,
  ]);
  const { stdout } = await execa(
    process.execPath,
    [
      '--import',
      'tsx',
      'src/cli/main.ts',
      'fp8-cast',
      '--in',
      modelDir,
      '--out',
      native,
      '--verify',
      '--keep-quantization-config',
    ],
    { cwd: repoRoot },
  );
  assert.match(stdout, /verified/);

  const standInIndex = JSON.parse(await readFile(path.join(standIn, INDEX), 'utf8')) as { weight_map: object };
  const nativeIndex = JSON.parse(await readFile(path.join(native, INDEX), 'utf8')) as { weight_map: object };
  assert.deepEqual(nativeIndex, standInIndex);
  const visible = async (dir: string) => (await readdir(dir)).filter((n) => !n.startsWith('.')).sort();
  assert.deepEqual(await visible(native), await visible(standIn));
  // --keep-quantization-config: config.json as slime (and the stand-in) leave it
  assert.deepEqual(await readFile(path.join(native, 'config.json')), await readFile(path.join(standIn, 'config.json')));

  let tensors = 0;
  let cast = 0;
  for (const shard of (await visible(native)).filter((n) => n.endsWith('.safetensors'))) {
    const [a, b] = [await readHeader(path.join(standIn, shard)), await readHeader(path.join(native, shard))];
    assert.deepEqual([...b.tensors.keys()].sort(), [...a.tensors.keys()].sort(), shard);
    assert.deepEqual(b.metadata, a.metadata);
    const [bytesA, bytesB] = [await readFile(a.file), await readFile(b.file)];
    for (const [name, ta] of a.tensors) {
      const tb = b.tensors.get(name)!;
      assert.equal(tb.dtype, ta.dtype, name);
      assert.deepEqual(tb.shape, ta.shape, name);
      assert.ok(bytesB.subarray(tb.begin, tb.end).equals(bytesA.subarray(ta.begin, ta.end)), `${shard}: ${name}`);
      tensors++;
      if (name.startsWith('model.layers.') && ta.dtype === 'BF16' && ta.shape.length === 2) cast++;
    }
  }
  assert.ok(tensors > 10 && cast > 5, `${tensors} tensors compared, ${cast} of them cast`);
});
