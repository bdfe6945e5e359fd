// The native FP8 -> BF16 cast's throughput (GB/s of FP8 input) on a synthetic checkpoint shaped like DeepSeek-R1's
// shards (>= 2 GB; KEEL_BENCH_FP8_GB to change), beside, in the same run: `cp` of the same shard files (each copy
// fsynced, as the cast fsyncs its shards); the write floor, cp writing the cast's output volume (every shard copied
// twice: the output is twice the input); and the PyTorch CPU reference of the same arithmetic (workloads/tiny/tools/
// fp8_cast_bf16.py, the CPU stand-in of slime's tool). cp, the write floor and the native cast alternate three times
// (KEEL_BENCH_FP8_ROUNDS) and the medians are compared: on a shared machine single runs vary a lot.
import { open, mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { castFp8Checkpoint, planCast } from '../../src/fp8/index.js';
import { fp8Weight, plainTensor, shardName, writeCheckpoint, type Shards } from '../support/fp8-checkpoint.js';
import { python, tinyDir } from '../support/tiny-model.js';

const hidden = 7168;
const moe = 2048;

/** One R1 decoder layer's attention weights and `experts` routed experts (FP8 + scales), norms and router in BF16. */
function layerTensors(layer: number, experts: number) {
  const p = `model.layers.${layer}`;
  const tensors = [
    ...fp8Weight(`${p}.self_attn.q_a_proj.weight`, 1536, hidden),
    ...fp8Weight(`${p}.self_attn.q_b_proj.weight`, 24576, 1536),
    ...fp8Weight(`${p}.self_attn.kv_a_proj_with_mqa.weight`, 576, hidden),
    ...fp8Weight(`${p}.self_attn.kv_b_proj.weight`, 32768, 512),
    ...fp8Weight(`${p}.self_attn.o_proj.weight`, hidden, 16384),
    plainTensor(`${p}.input_layernorm.weight`, 'BF16', [hidden]),
    plainTensor(`${p}.post_attention_layernorm.weight`, 'BF16', [hidden]),
    plainTensor(`${p}.mlp.gate.weight`, 'BF16', [256, hidden]),
    plainTensor(`${p}.mlp.gate.e_score_correction_bias`, 'F32', [256]),
  ];
  for (let e = 0; e < experts; e++) {
    const q = `${p}.mlp.experts.${e}`;
    tensors.push(
      ...fp8Weight(`${q}.gate_proj.weight`, moe, hidden),
      ...fp8Weight(`${q}.up_proj.weight`, moe, hidden),
      ...fp8Weight(`${q}.down_proj.weight`, hidden, moe),
    );
  }
  return tensors;
}

/** Shards of about 0.55 GB; each shard's last FP8 weight has its scale in the next shard, as in the R1 release. */
export function benchCheckpoint(gigabytes: number): Shards {
  const count = Math.max(1, Math.ceil(gigabytes / 0.55));
  const shards: Shards = {};
  let carried: ReturnType<typeof layerTensors> = [];
  for (let k = 1; k <= count; k++) {
    const tensors = [...carried, ...layerTensors(k, 9)];
    carried = k < count ? [tensors.pop()!] : [];
    shards[shardName(k, count)] = tensors;
  }
  return shards;
}

async function directoryBytes(dir: string, suffix: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(dir)) if (name.endsWith(suffix)) total += (await stat(join(dir, name))).size;
  return total;
}

async function fsyncAll(dir: string): Promise<void> {
  for (const name of await readdir(dir)) {
    const handle = await open(join(dir, name), 'r');
    await handle.sync();
    await handle.close();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function timed(action: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await action();
  return (performance.now() - start) / 1000;
}

export async function run(): Promise<void> {
  const gigabytes = Number(process.env.KEEL_BENCH_FP8_GB ?? 2.1);
  const root = await mkdtemp(join(tmpdir(), 'keel-bench-fp8-'));
  try {
    const input = join(root, 'fp8');
    await writeCheckpoint(input, benchCheckpoint(gigabytes));
    await fsyncAll(input);
    const shards = (await readdir(input)).filter((n) => n.endsWith('.safetensors'));
    const bytes = await directoryBytes(input, '.safetensors');
    const gb = bytes / 1e9;
    console.log(`  input: ${shards.length} R1-shaped shards, ${gb.toFixed(2)} GB; ${availableParallelism()} cores`);

    const outputGb = (await planCast(input)).shards.reduce((sum, shard) => sum + shard.layout.fileSize, 0) / 1e9;
    /** Seconds for cp to copy every shard into each of these (fresh) directories, fsynced; then they are removed. */
    const copyInto = async (names: string[]): Promise<number> => {
      const dirs = names.map((name) => join(root, name));
      for (const dir of dirs) await mkdir(dir);
      const seconds = await timed(async () => {
        for (const dir of dirs) await execa('cp', [...shards.map((s) => join(input, s)), dir]);
        for (const dir of dirs) await fsyncAll(dir);
      });
      for (const dir of dirs) await rm(dir, { recursive: true });
      return seconds;
    };
    const rounds = Number(process.env.KEEL_BENCH_FP8_ROUNDS ?? 3);
    const cpRuns: number[] = [];
    const floorRuns: number[] = [];
    const nativeRuns: number[] = [];
    const threads = availableParallelism();
    for (let round = 0; round < rounds; round++) {
      cpRuns.push(await copyInto(['cp']));
      floorRuns.push(await copyInto(['floor-a', 'floor-b']));
      const nativeDir = join(root, 'native');
      nativeRuns.push(
        await timed(async () => {
          const result = await castFp8Checkpoint({ inputDir: input, outputDir: nativeDir });
          if (result.skippedShards.length) throw new Error('a fresh output directory skipped shards');
        }),
      );
      await rm(nativeDir, { recursive: true });
      console.log(
        `  round ${round + 1}: cp ${cpRuns.at(-1)!.toFixed(2)} s, write floor ${floorRuns.at(-1)!.toFixed(2)} s, native ${nativeRuns.at(-1)!.toFixed(2)} s`,
      );
    }
    const cpSeconds = median(cpRuns);
    const nativeSeconds = median(nativeRuns);
    const floorSeconds = median(floorRuns);

    const torchDir = join(root, 'torch');
    const torchSeconds = await timed(() =>
      execa(python, [
        join(tinyDir, 'tools', 'fp8_cast_bf16.py'),
        '--input-fp8-hf-path',
        input,
        '--output-bf16-hf-path',
        torchDir,
      ]),
    );
    await rm(torchDir, { recursive: true });

    const rate = (seconds: number) => gb / seconds;
    console.log(`  cp, write floor and native: medians of ${rounds} rounds; PyTorch: one run`);
    console.log(`  cp (+fsync)            ${cpSeconds.toFixed(2)} s  ${rate(cpSeconds).toFixed(2)} GB/s`);
    console.log(
      `  native cast (${threads} threads)  ${nativeSeconds.toFixed(2)} s  ${rate(nativeSeconds).toFixed(2)} GB/s of FP8 input`,
    );
    console.log(
      `  cp twice (${(2 * gb).toFixed(2)} GB written, the output is ${outputGb.toFixed(2)} GB)  ${floorSeconds.toFixed(2)} s  ${rate(floorSeconds).toFixed(2)} GB/s of FP8 input`,
    );
    console.log(`  PyTorch CPU reference  ${torchSeconds.toFixed(2)} s  ${rate(torchSeconds).toFixed(2)} GB/s`);
    console.log(`  native / cp = ${(cpSeconds / nativeSeconds).toFixed(2)}  (target >= 0.7)`);
    console.log(
      `  native / write floor = ${(floorSeconds / nativeSeconds).toFixed(2)}  (cp / write floor = ${(floorSeconds / cpSeconds).toFixed(2)}: what writing twice the bytes costs here)`,
    );
    console.log(`  native / PyTorch = ${(torchSeconds / nativeSeconds).toFixed(2)}  (target > 1)`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
