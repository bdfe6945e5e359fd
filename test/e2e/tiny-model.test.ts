// The tiny model generator writes an FP8 release laid out like DeepSeek-R1's, and the cast stand-in honours the
// FP8 -> BF16 contract. Real programs: make_model.py (CPU torch) and tools/fp8_cast_bf16.py.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { execa } from 'execa';
import {
  ensureTestModel,
  python,
  readSafetensorsHeader,
  readTensorBytes,
  tinyDir,
  type TensorInfo,
} from '../support/tiny-model.js';

const INDEX = 'model.safetensors.index.json';
interface Index {
  metadata: Record<string, unknown>;
  weight_map: Record<string, string>;
}

let modelDir = '';
let castDir = '';
let work = '';
const headers = new Map<string, Record<string, TensorInfo>>();

before(async () => {
  modelDir = await ensureTestModel();
  work = await mkdtemp(path.join(os.tmpdir(), 'keel-tiny-cast-'));
  castDir = path.join(work, 'bf16');
  const index = await readJson<Index>(path.join(modelDir, INDEX));
  for (const shard of new Set(Object.values(index.weight_map))) {
    headers.set(shard, (await readSafetensorsHeader(path.join(modelDir, shard))).tensors);
  }
});
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

async function readJson<T>(file: string): Promise<T> {
  return JSON.parse(await readFile(file, 'utf8')) as T;
}

const BYTES: Record<string, number> = { F8_E4M3: 1, BF16: 2, F32: 4, F16: 2 };

test('config.json declares DeepSeek-V3 with the R1 fp8 quantization_config', async () => {
  const config = await readJson<Record<string, unknown>>(path.join(modelDir, 'config.json'));
  assert.deepEqual(config.architectures, ['DeepseekV3ForCausalLM']);
  assert.equal(config.model_type, 'deepseek_v3');
  assert.deepEqual(config.quantization_config, {
    activation_scheme: 'dynamic',
    fmt: 'e4m3',
    quant_method: 'fp8',
    weight_block_size: [128, 128],
  });
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) {
    assert.ok(await readFile(path.join(modelDir, f)), f);
  }
});

test('FP8 weights have 128x128 block scales, partial edge blocks and a scale in another shard', async () => {
  const index = await readJson<Index>(path.join(modelDir, INDEX));
  const shards = new Set(Object.values(index.weight_map));
  assert.ok(shards.size >= 3, `several shards (got ${shards.size})`);
  for (const s of shards) assert.match(s, /^model-\d{5}-of-\d{5}\.safetensors$/);
  let total = 0;
  let fp8 = 0;
  let partial = 0;
  let larger = 0;
  let crossShard = 0;
  for (const [name, shard] of Object.entries(index.weight_map)) {
    const info = headers.get(shard)?.[name];
    assert.ok(info, `${name} is in ${shard}`);
    total += info.data_offsets[1] - info.data_offsets[0];
    assert.equal(
      info.data_offsets[1] - info.data_offsets[0],
      info.shape.reduce((a, b) => a * b, 1) * BYTES[info.dtype]!,
    );
    const quantizable =
      name.startsWith('model.layers.') && info.shape.length === 2 && !name.endsWith('mlp.gate.weight');
    if (name.endsWith('_scale_inv')) continue;
    if (!quantizable) {
      assert.notEqual(info.dtype, 'F8_E4M3', `${name} stays unquantized like the R1 release`);
      continue;
    }
    assert.equal(info.dtype, 'F8_E4M3', `${name} is FP8`);
    fp8++;
    const scaleName = `${name}_scale_inv`;
    const scaleShard = index.weight_map[scaleName];
    assert.ok(scaleShard, `${scaleName} exists`);
    const scale = headers.get(scaleShard)?.[scaleName];
    const [m, n] = info.shape as [number, number];
    assert.equal(scale?.dtype, 'F32');
    assert.deepEqual(scale?.shape, [Math.ceil(m / 128), Math.ceil(n / 128)]);
    if (m % 128 !== 0 || n % 128 !== 0) partial++;
    if (m > 128 || n > 128) larger++;
    if (scaleShard !== shard) crossShard++;
  }
  assert.ok(fp8 > 50, `many FP8 weights (${fp8})`);
  assert.ok(partial > 0 && larger > 0, `partial edge blocks (${partial}) and multi-block weights (${larger})`);
  assert.ok(crossShard >= 1, 'at least one scale sits in a different shard than its weight');
  assert.equal(index.metadata.total_size, total);
  assert.ok(index.weight_map['model.embed_tokens.weight'] && index.weight_map['lm_head.weight']);
});

test('toy dataset: train and eval splits are disjoint prompt/label jsonl', async () => {
  const read = async (f: string) =>
    (await readFile(path.join(modelDir, 'data', f), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { prompt: string; label: string });
  const train = await read('train.jsonl');
  const evaluation = await read('eval.jsonl');
  assert.ok(train.length >= 100 && evaluation.length >= 50);
  const seen = new Set(train.map((r) => r.prompt));
  for (const r of evaluation) assert.ok(!seen.has(r.prompt), `${r.prompt} only in eval`);
  for (const r of [...train, ...evaluation]) {
    const m = /^(\d+)\+(\d+)=$/.exec(r.prompt);
    assert.ok(m, r.prompt);
    assert.equal(r.label, String(Number(m[1]) + Number(m[2])));
  }
});

// Contract arithmetic, independent of torch: float8_e4m3fn decode, fp32 product, bf16 round-to-nearest-even.
function e4m3(byte: number): number {
  const sign = byte & 0x80 ? -1 : 1;
  const e = (byte >> 3) & 0xf;
  const m = byte & 7;
  if (e === 15 && m === 7) return NaN;
  return sign * (e === 0 ? m * 2 ** -9 : (1 + m / 8) * 2 ** (e - 7));
}
function bf16Bits(x: number): number {
  const f = new Float32Array([x]);
  const bits = new Uint32Array(f.buffer)[0]!;
  if (Number.isNaN(x)) return 0x7fff;
  return ((bits + 0x7fff + ((bits >> 16) & 1)) >>> 16) & 0xffff;
}

test('the cast stand-in writes BF16 shards by the contract, index last without scales', async () => {
  await execa(python, [
    path.join(tinyDir, 'tools', 'fp8_cast_bf16.py'),
    '--input-fp8-hf-path',
    modelDir,
    '--output-bf16-hf-path',
    castDir,
  ]);
  const inIndex = await readJson<Index>(path.join(modelDir, INDEX));
  const outIndex = await readJson<Index>(path.join(castDir, INDEX));
  assert.deepEqual(outIndex.metadata, {});
  const expected = Object.fromEntries(Object.entries(inIndex.weight_map).filter(([k]) => !k.endsWith('_scale_inv')));
  assert.deepEqual(outIndex.weight_map, expected);
  const files = (await readdir(castDir)).sort();
  assert.deepEqual(
    files.filter((f) => f.endsWith('.safetensors')),
    [...new Set(Object.values(inIndex.weight_map))].sort(),
  );
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) {
    assert.deepEqual(
      await readFile(path.join(castDir, f)),
      await readFile(path.join(modelDir, f)),
      `${f} copied unchanged`,
    );
  }
  // Every tensor in the output is BF16 (or was already non-FP8) and has no scale entry.
  for (const shard of new Set(Object.values(outIndex.weight_map))) {
    const { tensors, metadata } = await readSafetensorsHeader(path.join(castDir, shard));
    assert.equal(metadata, undefined, "no shard metadata: slime's tool calls save_file without it");
    for (const [name, info] of Object.entries(tensors)) {
      assert.ok(!name.endsWith('_scale_inv'));
      assert.notEqual(info.dtype, 'F8_E4M3', name);
    }
  }
  // Check values of a weight whose scale lives in another shard (partial blocks on both axes where possible).
  const name = Object.keys(inIndex.weight_map).find(
    (k) =>
      !k.endsWith('_scale_inv') &&
      inIndex.weight_map[`${k}_scale_inv`] &&
      inIndex.weight_map[`${k}_scale_inv`] !== inIndex.weight_map[k],
  );
  assert.ok(name);
  const q = await readTensorBytes(path.join(modelDir, inIndex.weight_map[name]!), name);
  const s = await readTensorBytes(path.join(modelDir, inIndex.weight_map[`${name}_scale_inv`]!), `${name}_scale_inv`);
  const out = await readTensorBytes(path.join(castDir, outIndex.weight_map[name]!), name);
  assert.equal(out.info.dtype, 'BF16');
  assert.deepEqual(out.info.shape, q.info.shape);
  const [rows, cols] = q.info.shape as [number, number];
  const scaleCols = s.info.shape[1]!;
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const scale = s.bytes.readFloatLE(4 * (Math.floor(i / 128) * scaleCols + Math.floor(j / 128)));
      const want = bf16Bits(Math.fround(e4m3(q.bytes[i * cols + j]!) * scale));
      const got = out.bytes.readUInt16LE(2 * (i * cols + j));
      if (got !== want) assert.fail(`${name}[${i},${j}]: bf16 0x${got.toString(16)} != 0x${want.toString(16)}`);
    }
  }
});

test('the cast output loads back into the tiny model and generates', async () => {
  const snippet = [
    'import sys, torch',
    `sys.path.insert(0, ${JSON.stringify(tinyDir)})`,
    'from tiny_model import load_hf_dir',
    'import toy_task as t',
    'cfg, model = load_hf_dir(sys.argv[1])',
    "outs = model.generate([t.prompt_ids('12+34='), t.prompt_ids('7+5=')], 4, 1.0, torch.Generator().manual_seed(0))",
    'print(len(outs), all(1 <= len(o) <= 4 for o in outs))',
  ].join('\n');
  const { stdout } = await execa(python, ['-c', snippet, castDir]);
  assert.equal(stdout.trim(), '2 True');
});

test('pretraining takes --steps steps when the probe never reaches its target, and the same arguments make the same model, byte for byte', async () => {
  // ensureTestModel made its model with these arguments (a target pass rate above 1: never reached); a second run in
  // another directory must write the same shards (one thread, deterministic kernels, every random choice from --seed)
  // and the same datasets.
  const again = path.join(work, 'again');
  const { stdout } = await execa(python, [
    path.join(tinyDir, 'make_model.py'),
    ...['--out', again, '--seed', '7', '--steps', '20', '--target-pass-rate', '2', '--shards', '4'],
  ]);
  const report = JSON.parse(stdout.trim().split('\n').at(-1)!) as { steps: number };
  assert.equal(report.steps, 20);
  const index = await readJson<Index>(path.join(modelDir, INDEX));
  const files = [...new Set(Object.values(index.weight_map)), INDEX, 'data/train.jsonl', 'data/eval.jsonl'];
  for (const f of files) {
    const [first, second] = await Promise.all([readFile(path.join(modelDir, f)), readFile(path.join(again, f))]);
    assert.ok(first.equals(second), `${f} differs between two runs with the same arguments`);
  }
});

test('pretraining stops at the first probe that reaches --target-pass-rate', async () => {
  // Probes every 50 steps; a target of 0 is reached by the first one, so of at most 120 steps 50 are taken.
  const early = path.join(work, 'early');
  const { stdout } = await execa(python, [
    path.join(tinyDir, 'make_model.py'),
    ...['--out', early, '--seed', '7', '--steps', '120', '--target-pass-rate', '0', '--shards', '4'],
  ]);
  const report = JSON.parse(stdout.trim().split('\n').at(-1)!) as { steps: number };
  assert.equal(report.steps, 50);
});
