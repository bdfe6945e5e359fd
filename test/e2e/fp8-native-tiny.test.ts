// The native cast with likeSlime on the tiny FP8 model (workloads/tiny/make_model.py: R1 layout, partial edge blocks,
// a scale in another shard) writes the same bytes, in every file, as the stand-in of slime's tool
// (workloads/tiny/tools/fp8_cast_bf16.py, PyTorch on the CPU); `keel fp8-cast --verify` accepts it.
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

test("native cast with likeSlime == the stand-in of slime's tool, byte for byte in every file, on the tiny model", async () => {
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
    ['--import', 'tsx', 'src/cli/main.ts', 'fp8-cast', '--in', modelDir, '--out', native, '--verify', '--like-slime'],
    { cwd: repoRoot },
  );
  assert.match(stdout, /verified/);

  // Every file the stand-in writes, byte for byte (keel's own resume record, a dot file, aside).
  const visible = async (dir: string) => (await readdir(dir)).filter((n) => !n.startsWith('.')).sort();
  const files = await visible(standIn);
  assert.deepEqual(await visible(native), files);
  assert.ok(
    files.includes(INDEX) &&
      files.includes('config.json') &&
      files.filter((f) => f.endsWith('.safetensors')).length > 1,
  );
  for (const file of files) {
    const [a, b] = [await readFile(path.join(standIn, file)), await readFile(path.join(native, file))];
    assert.ok(a.equals(b), `${file} differs (${a.length} vs ${b.length} bytes)`);
  }
  // as slime's tool: quantization_config kept, no shard metadata, the index in the input's order minus cast scales
  const config = JSON.parse(await readFile(path.join(native, 'config.json'), 'utf8')) as Record<string, unknown>;
  assert.ok(config.quantization_config, 'quantization_config kept');
  const shard = files.find((f) => f.endsWith('.safetensors'))!;
  assert.equal((await readHeader(path.join(native, shard))).metadata, undefined);
  const inputIndex = JSON.parse(await readFile(path.join(modelDir, INDEX), 'utf8')) as { weight_map: object };
  const outputIndex = JSON.parse(await readFile(path.join(native, INDEX), 'utf8')) as { weight_map: object };
  const kept = Object.keys(inputIndex.weight_map).filter((k) => !k.endsWith('_scale_inv'));
  assert.deepEqual(Object.keys(outputIndex.weight_map), kept);
  let cast = 0;
  for (const t of (await readHeader(path.join(native, shard))).tensors.values()) if (t.dtype === 'BF16') cast++;
  assert.ok(cast > 0, 'the shard holds cast BF16 weights');
});
