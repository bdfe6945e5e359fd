// The native FP8 -> BF16 cast's throughput (GB/s of FP8 input) on a synthetic checkpoint shaped like DeepSeek-R1's
// shards (>= 2 GB; KEEL_BENCH_FP8_GB to change), beside, in the same run: `cp` of the same shard files (each copy
// fsynced, as the cast fsyncs its shards); the write floor, the disk writing the cast's output volume past the page
// cache as the cast does (`dd oflag=direct` of every shard twice: the output is twice the input); the cast through the
// page cache only (--no-direct-io); and the PyTorch CPU reference of the same arithmetic (workloads/tiny/tools/
// fp8_cast_bf16.py, the CPU stand-in of slime's tool). All but PyTorch run three times (KEEL_BENCH_FP8_ROUNDS) and
// the medians are compared: on a shared machine single runs vary a lot. Each round starts with another of them,
// because virtual disks often write a burst of a few GB fast after a pause and then slow down: whichever ran first
// would otherwise have the burst to itself every time.
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
    const sources = shards.map((s) => join(input, s));
    /** Seconds for `copy` to fill each of these (fresh) directories, fsynced; then they are removed. */
    const fill = async (names: string[], copy: (dir: string) => Promise<unknown>): Promise<number> => {
      const dirs = names.map((name) => join(root, name));
      for (const dir of dirs) await mkdir(dir);
      const seconds = await timed(async () => {
        for (const dir of dirs) await copy(dir);
        for (const dir of dirs) await fsyncAll(dir);
      });
      for (const dir of dirs) await rm(dir, { recursive: true });
      return seconds;
    };
    const cp = (dir: string) => execa('cp', [...sources, dir]);
    // GNU dd writes the last partial block without O_DIRECT, as the cast does.
    const ddDirect = async (dir: string) => {
      for (const shard of shards)
        await execa('dd', [
          `if=${join(input, shard)}`,
          `of=${join(dir, shard)}`,
          'bs=4M',
          'oflag=direct',
          'status=none',
        ]);
    };
    const castOnce = async (directIo: boolean): Promise<number> => {
      const nativeDir = join(root, 'native');
      const seconds = await timed(async () => {
        const result = await castFp8Checkpoint({ inputDir: input, outputDir: nativeDir, directIo });
        if (result.skippedShards.length) throw new Error('a fresh output directory skipped shards');
        if (directIo && !result.directBytes) console.log('  note: this file system refused O_DIRECT');
      });
      await rm(nativeDir, { recursive: true });
      return seconds;
    };
    const threads = availableParallelism();
    const contenders = [
      { name: 'cp', runs: [] as number[], once: () => fill(['cp'], cp) },
      { name: 'write floor', runs: [] as number[], once: () => fill(['floor-a', 'floor-b'], ddDirect) },
      { name: 'native', runs: [] as number[], once: () => castOnce(true) },
      { name: 'native (page cache)', runs: [] as number[], once: () => castOnce(false) },
    ];
    const rounds = Number(process.env.KEEL_BENCH_FP8_ROUNDS ?? 3);
    for (let round = 0; round < rounds; round++) {
      const order = contenders.map((_, k) => contenders[(k + round) % contenders.length]!);
      for (const contender of order) contender.runs.push(await contender.once());
      console.log(`  round ${round + 1}: ${order.map((c) => `${c.name} ${c.runs.at(-1)!.toFixed(2)} s`).join(', ')}`);
    }
    const [cpSeconds, floorSeconds, nativeSeconds, bufferedSeconds] = contenders.map((c) => median(c.runs)) as [
      number,
      number,
      number,
      number,
    ];

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

    const rate = (seconds: number) => `${seconds.toFixed(2)} s  ${(gb / seconds).toFixed(2)} GB/s of FP8 input`;
    const ratio = (slow: number, fast: number) => (slow / fast).toFixed(2);
    console.log(`  medians of ${rounds} rounds (each starts with another of them); PyTorch: one run`);
    console.log(`  cp (+fsync)                       ${rate(cpSeconds)}`);
    console.log(`  write floor (+fsync)              ${rate(floorSeconds)}`);
    console.log(
      `    dd oflag=direct, every shard twice: ${(2 * gb).toFixed(2)} GB, the cast writes ${outputGb.toFixed(2)} GB`,
    );
    console.log(`  native cast (${threads} threads, O_DIRECT)  ${rate(nativeSeconds)}`);
    console.log(`  native cast, page cache only      ${rate(bufferedSeconds)}`);
    console.log(`  PyTorch CPU reference             ${rate(torchSeconds)}`);
    console.log(`  native / cp = ${ratio(cpSeconds, nativeSeconds)}  (target >= 0.7)`);
    console.log(
      `  native / write floor = ${ratio(floorSeconds, nativeSeconds)}; write floor / cp = ${ratio(cpSeconds, floorSeconds)} ` +
        '(what writing twice the bytes costs against cp here)',
    );
    console.log(`  native O_DIRECT / page cache only = ${ratio(bufferedSeconds, nativeSeconds)}`);
    console.log(`  native / PyTorch = ${ratio(torchSeconds, nativeSeconds)}  (target > 1)`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
