// Synthetic FP8 checkpoints for the cast's tests and benchmark, written with keel's own safetensors layout (which the
// Python tests load with the reference library): R1-style naming, `<name>_scale_inv` F32 [ceil(M/128), ceil(N/128)].
import { randomFillSync } from 'node:crypto';
import { closeSync, constants, openSync } from 'node:fs';
import { mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { layoutFile } from '../../src/fp8/safetensors.js';

export interface SyntheticTensor {
  name: string;
  dtype: string;
  shape: number[];
  data: Uint8Array;
}

export type Shards = Record<string, SyntheticTensor[]>;

/** Does the file system of `dir` open files with O_DIRECT (the cast then writes most of its output that way)? */
export function takesDirectIo(dir: string): boolean {
  try {
    closeSync(openSync(join(dir, '.direct-io-probe'), constants.O_WRONLY | constants.O_CREAT | constants.O_DIRECT));
    return true;
  } catch {
    return false;
  }
}

export const shardName = (k: number, n: number) =>
  `model-${String(k).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;

/** Write one safetensors file (the reference layout) and return its size. */
export async function writeSafetensors(file: string, tensors: SyntheticTensor[]): Promise<number> {
  const layout = layoutFile(tensors, { format: 'pt' });
  const handle = await open(file, 'w');
  try {
    await handle.write(layout.headerBytes, 0, layout.headerBytes.length, 0);
    const byName = new Map(tensors.map((t) => [t.name, t]));
    for (const placed of layout.tensors) {
      const data = byName.get(placed.name)!.data;
      if (data.length !== placed.end - placed.begin) throw new Error(`tensor ${placed.name}: wrong data length`);
      await handle.write(data, 0, data.length, placed.begin);
    }
  } finally {
    await handle.close();
  }
  return layout.fileSize;
}

/** Write shards, config.json (with quantization_config), tokenizer files, a .py file, and the index last. */
export async function writeCheckpoint(dir: string, shards: Shards): Promise<void> {
  await mkdir(dir, { recursive: true });
  const weightMap: Record<string, string> = {};
  for (const [shard, tensors] of Object.entries(shards)) {
    await writeSafetensors(join(dir, shard), tensors);
    for (const t of tensors) weightMap[t.name] = shard;
  }
  const config = {
    architectures: ['DeepseekV3ForCausalLM'],
    hidden_size: 7168,
    quantization_config: {
      activation_scheme: 'dynamic',
      fmt: 'e4m3',
      quant_method: 'fp8',
      weight_block_size: [128, 128],
    },
  };
  await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  await writeFile(join(dir, 'tokenizer.json'), '{"version": "1.0"}');
  await writeFile(join(dir, 'tokenizer_config.json'), '{"model_max_length": 16384}');
  await writeFile(join(dir, 'chat_template.jinja'), '{{ messages }}');
  await writeFile(join(dir, 'modeling_deepseek.py'), '# modeling code\n');
  await writeFile(join(dir, 'README.md'), 'not copied\n');
  await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
}

export const f32Bytes = (values: number[] | Float32Array) => new Uint8Array(Float32Array.from(values).buffer);

/** An FP8 weight and its scale; `codes(i)` gives element i's code (default: random), `scale(b)` block b's scale. */
export function fp8Weight(
  name: string,
  rows: number,
  columns: number,
  options: { codes?: (i: number) => number; scale?: (block: number) => number } = {},
): [SyntheticTensor, SyntheticTensor] {
  const data = new Uint8Array(rows * columns);
  if (options.codes) for (let i = 0; i < data.length; i++) data[i] = options.codes(i);
  else randomFillSync(data);
  const scaleShape = [Math.ceil(rows / 128), Math.ceil(columns / 128)];
  const scales = Array.from({ length: scaleShape[0]! * scaleShape[1]! }, (_, b) =>
    options.scale ? options.scale(b) : 2 ** -10 * (1 + (b % 7) / 3),
  );
  return [
    { name, dtype: 'F8_E4M3', shape: [rows, columns], data },
    { name: `${name}_scale_inv`, dtype: 'F32', shape: scaleShape, data: f32Bytes(scales) },
  ];
}

export function plainTensor(name: string, dtype: 'BF16' | 'F32' | 'I64' | 'U8', shape: number[]): SyntheticTensor {
  const size = { BF16: 2, F32: 4, I64: 8, U8: 1 }[dtype];
  const data = new Uint8Array(shape.reduce((a, b) => a * b, 1) * size);
  randomFillSync(data);
  return { name, dtype, shape, data };
}

/** Scales that reach the edge cases: fp32-subnormal and bf16-overflowing products, negative, zero, odd mantissas. */
const edgeScales = [1, 2 ** -10, 1.7e-3, -0.37, 2 ** -120, 2 ** -135, 1e-45, 2 ** 120, 3.4e38, 0, 1.00390625, 0.1];

/**
 * The unit checkpoint: every FP8 code in every block, subnormal codes and products, partial edge blocks (rows and
 * columns not multiples of 128, and columns not multiples of 16), a scale in another shard than its weight, NaN codes,
 * and non-FP8 tensors (BF16, F32, I64, U8).
 */
export function unitCheckpoint(): Shards {
  const everyCode = (i: number) => (i * 37 + Math.floor(i / 256)) & 0xff;
  const [a, aScale] = fp8Weight('model.layers.0.mlp.down_proj.weight', 300, 1000, {
    codes: everyCode,
    scale: (b) => edgeScales[b % edgeScales.length]!,
  });
  const [b, bScale] = fp8Weight('model.layers.0.self_attn.o_proj.weight', 256, 384);
  const [c, cScale] = fp8Weight('model.layers.1.mlp.up_proj.weight', 129, 17, {
    codes: everyCode,
    scale: (k) => [0.5, -3][k]!,
  });
  const [d, dScale] = fp8Weight('model.layers.1.mlp.gate_proj.weight', 7, 300, { codes: (i) => 255 - (i & 0xff) });
  // every code under the in-range scales nearest the table kernel's limits (2^-120 and 2^118), signs mixed
  const limits = [2 ** -120, -(2 ** 118), -1.7e-3, 3.1e-5, 2 ** 118, -(2 ** -120), 0.75, 1.00390625];
  const [e, eScale] = fp8Weight('model.layers.2.self_attn.q_a_proj.weight', 256, 520, {
    codes: everyCode,
    scale: (k) => limits[k % limits.length]!,
  });
  return {
    [shardName(1, 3)]: [
      a,
      b,
      bScale,
      plainTensor('model.embed_tokens.weight', 'BF16', [64, 100]),
      plainTensor('model.layers.0.input_layernorm.weight', 'BF16', [1000]),
    ],
    [shardName(2, 3)]: [aScale, c, cScale, plainTensor('model.layers.1.mlp.gate.e_score_correction_bias', 'F32', [17])],
    [shardName(3, 3)]: [
      d,
      dScale,
      e,
      eScale,
      plainTensor('model.position_ids', 'I64', [5]),
      plainTensor('model.mask', 'U8', [3, 3]),
    ],
  };
}
