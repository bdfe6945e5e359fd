// The native cast end to end on small synthetic checkpoints: output contract, values against the scalar definition,
// resume after an abort and after SIGKILL, and bad inputs that fail naming file and tensor without complete-looking
// output.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { castFp8Checkpoint, readHeader, stateFileName } from '../../src/fp8/index.js';
import { checkFp8CastComplete, indexFileName } from '../../src/fp8/check.js';
import { dequantBits } from '../../src/fp8/e4m3.js';
import { TaskRunner } from '../../src/fp8/tasks.js';
import {
  fp8Weight,
  plainTensor,
  shardName,
  takesDirectIo,
  unitCheckpoint,
  writeCheckpoint,
  type Shards,
} from '../support/fp8-checkpoint.js';
import { repoRoot } from '../support/tiny-model.js';

const roots: string[] = [];
after(async () => {
  for (const root of roots) await rm(root, { recursive: true, force: true });
});

async function checkpoint(shards: Shards = unitCheckpoint()): Promise<{ input: string; output: string; root: string }> {
  const root = await mkdtemp(join(tmpdir(), 'keel-fp8cast-'));
  roots.push(root);
  await writeCheckpoint(join(root, 'in'), shards);
  return { root, input: join(root, 'in'), output: join(root, 'out') };
}

async function tensorBytes(file: string, name: string): Promise<Buffer> {
  const header = await readHeader(file);
  const entry = header.tensors.get(name)!;
  return (await readFile(file)).subarray(entry.begin, entry.end);
}

/** Every file of a directory (names and bytes), the cast's state file left out. */
async function snapshot(dir: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const name of (await readdir(dir)).sort())
    if (name !== stateFileName) files.set(name, await readFile(join(dir, name)));
  return files;
}

describe('castFp8Checkpoint', () => {
  it('writes the output contract: shards without scales, index last, side files, format pt', async () => {
    const { input, output } = await checkpoint();
    const result = await castFp8Checkpoint({ inputDir: input, outputDir: output, threads: 2, verify: true });
    assert.equal(result.shards, 3);
    assert.deepEqual(result.skippedShards, []);
    assert.deepEqual(await checkFp8CastComplete(input, output), { complete: true });
    const index = JSON.parse(await readFile(join(output, indexFileName), 'utf8')) as {
      metadata: object;
      weight_map: Record<string, string>;
    };
    assert.deepEqual(index.metadata, {});
    const inputMap = (JSON.parse(await readFile(join(input, indexFileName), 'utf8')) as typeof index).weight_map;
    const expected = Object.fromEntries(Object.entries(inputMap).filter(([k]) => !k.endsWith('_scale_inv')));
    assert.deepEqual(index.weight_map, expected);
    const config = JSON.parse(await readFile(join(output, 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(config.quantization_config, undefined);
    assert.equal(config.hidden_size, 7168);
    for (const file of ['tokenizer.json', 'tokenizer_config.json', 'chat_template.jinja', 'modeling_deepseek.py'])
      assert.deepEqual(await readFile(join(output, file)), await readFile(join(input, file)), file);
    assert.ok(!existsSync(join(output, 'README.md')));
    for (const shard of Object.keys(unitCheckpoint())) {
      const header = await readHeader(join(output, shard));
      assert.deepEqual(header.metadata, { format: 'pt' });
      assert.ok(![...header.tensors.keys()].some((k) => k.endsWith('_scale_inv')));
    }
  });

  it('casts every element to bf16(fp32(x) * s) and copies other tensors byte for byte', async () => {
    const shards = unitCheckpoint();
    const { input, output } = await checkpoint(shards);
    await castFp8Checkpoint({ inputDir: input, outputDir: output, threads: 1 });
    const all = Object.entries(shards).flatMap(([shard, tensors]) => tensors.map((t) => ({ shard, t })));
    const scaleOf = new Map(all.filter(({ t }) => t.name.endsWith('_scale_inv')).map(({ t }) => [t.name, t]));
    let cast = 0;
    for (const { shard, t } of all) {
      if (t.name.endsWith('_scale_inv')) continue;
      const got = await tensorBytes(join(output, shard), t.name);
      if (t.dtype !== 'F8_E4M3') {
        assert.deepEqual(got, Buffer.from(t.data), t.name);
        continue;
      }
      const scale = scaleOf.get(`${t.name}_scale_inv`)!;
      const scales = new Float32Array(scale.data.buffer, scale.data.byteOffset, scale.data.length / 4);
      const [rows, columns] = t.shape as [number, number];
      const bits = new Uint16Array(got.buffer, got.byteOffset, rows * columns);
      for (let i = 0; i < rows * columns; i++) {
        const [r, c] = [Math.floor(i / columns), i % columns];
        const s = scales[Math.floor(r / 128) * scale.shape[1]! + Math.floor(c / 128)]!;
        if (bits[i] !== dequantBits(t.data[i]!, s))
          assert.fail(`${t.name}[${r}, ${c}]: code ${t.data[i]} scale ${s} gave ${bits[i]}`);
      }
      cast++;
    }
    assert.equal(cast, 5);
  });

  it('gives the same bytes with tasks smaller than a block row (a few rows of one block per task)', async () => {
    const { input, output, root } = await checkpoint();
    await castFp8Checkpoint({ inputDir: input, outputDir: output, chunkBytes: 4096, verify: true });
    const whole = join(root, 'whole');
    await castFp8Checkpoint({ inputDir: input, outputDir: whole });
    assert.deepEqual(await snapshot(output), await snapshot(whole));
  });

  it('writes whole 4096-byte blocks with O_DIRECT where the file system takes it, the same bytes as buffered', async () => {
    const { input, output, root } = await checkpoint();
    const directHere = takesDirectIo(root);
    // 10,000-byte tasks: most task ranges start and end inside a 4096-byte block, so both ways of writing are used
    const direct = await castFp8Checkpoint({ inputDir: input, outputDir: output, chunkBytes: 10_000, verify: true });
    const whole = await castFp8Checkpoint({ inputDir: input, outputDir: join(root, 'whole') });
    const buffered = await castFp8Checkpoint({ inputDir: input, outputDir: join(root, 'buffered'), directIo: false });
    assert.equal(buffered.directBytes, 0);
    if (directHere) {
      assert.ok(direct.directBytes > 0 && direct.directBytes % 4096 === 0, `direct bytes ${direct.directBytes}`);
      assert.ok(direct.directBytes < direct.bytesOut);
      assert.ok(whole.directBytes > direct.directBytes, `${whole.directBytes} vs ${direct.directBytes}`);
    }
    assert.deepEqual(await snapshot(output), await snapshot(join(root, 'buffered')));
    assert.deepEqual(await snapshot(join(root, 'whole')), await snapshot(join(root, 'buffered')));
  });

  it("keeps config.json unchanged on request (slime's behaviour)", async () => {
    const { input, output } = await checkpoint();
    await castFp8Checkpoint({ inputDir: input, outputDir: output, keepQuantizationConfig: true });
    assert.deepEqual(await readFile(join(output, 'config.json')), await readFile(join(input, 'config.json')));
  });

  it('resumes after an abort without redoing finished shards, with an identical result', async () => {
    const shards: Shards = {};
    for (let k = 1; k <= 6; k++)
      shards[shardName(k, 6)] = [...fp8Weight(`w${k}`, 1024, 1024), plainTensor(`n${k}`, 'BF16', [1024])];
    const { input, output, root } = await checkpoint(shards);
    const controller = new AbortController();
    await assert.rejects(
      castFp8Checkpoint({
        inputDir: input,
        outputDir: output,
        threads: 1,
        signal: controller.signal,
        onProgress: (p) => {
          if (p.shardsDone.length === 1) controller.abort(new Error('stop after one shard'));
        },
      }),
      /stop after one shard/,
    );
    const left = await readdir(output);
    assert.ok(!left.includes(indexFileName), 'no index after an abort');
    assert.deepEqual(
      left.filter((n) => n.endsWith('.partial')),
      [],
      'no partial shard left',
    );
    // The shards finished when the abort came (one, or two if the next one was already at its rename).
    const finished = left.filter((n) => n.endsWith('.safetensors')).sort();
    assert.ok(finished.length >= 1 && finished.length < 6, finished.join(', '));
    const before = await readFile(join(output, finished[0]!));

    const resumed = await castFp8Checkpoint({ inputDir: input, outputDir: output, threads: 2 });
    assert.deepEqual(resumed.skippedShards.sort(), finished);
    assert.deepEqual(await readFile(join(output, finished[0]!)), before);
    const fresh = join(root, 'fresh');
    await castFp8Checkpoint({ inputDir: input, outputDir: fresh });
    assert.deepEqual(await snapshot(output), await snapshot(fresh));
  });

  it('resumes after the process is killed with SIGKILL mid-run', async () => {
    // Six shards of 4 MB cast by the real CLI in a child process, killed once the first shards are recorded.
    const shards: Shards = {};
    for (let k = 1; k <= 6; k++)
      shards[shardName(k, 6)] = fp8Weight(`model.layers.${k}.mlp.down_proj.weight`, 2048, 2048);
    const { input, output, root } = await checkpoint(shards);
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        join(repoRoot, 'src/cli/main.ts'),
        'fp8-cast',
        '--in',
        input,
        '--out',
        output,
        '--threads',
        '1',
      ],
      { cwd: repoRoot, stdio: 'ignore' },
    );
    const exited = new Promise((resolve) => child.once('exit', resolve));
    let recorded: string[] = [];
    for (let waited = 0; recorded.length === 0 && waited < 60_000; waited += 20) {
      await new Promise((r) => setTimeout(r, 20));
      try {
        const state = JSON.parse(await readFile(join(output, stateFileName), 'utf8')) as { shards: object };
        recorded = Object.keys(state.shards);
      } catch {
        // not written yet
      }
    }
    assert.ok(recorded.length > 0, 'the child recorded a finished shard');
    child.kill('SIGKILL');
    await exited;
    assert.ok(!existsSync(join(output, indexFileName)), 'killed before the end: no index');
    const resumed = await castFp8Checkpoint({ inputDir: input, outputDir: output });
    assert.ok(resumed.skippedShards.length >= recorded.length, `skipped ${resumed.skippedShards.join(', ')}`);
    assert.ok(resumed.skippedShards.length < 6, 'the kill came before the end');
    assert.deepEqual(await checkFp8CastComplete(input, output), { complete: true });
    const fresh = join(root, 'fresh');
    await castFp8Checkpoint({ inputDir: input, outputDir: fresh });
    assert.deepEqual(await snapshot(output), await snapshot(fresh));
  });

  it('casts again a recorded shard whose output file was changed', async () => {
    const { input, output } = await checkpoint();
    await castFp8Checkpoint({ inputDir: input, outputDir: output });
    const shard = shardName(2, 3);
    await truncate(join(output, shard), 100);
    const again = await castFp8Checkpoint({ inputDir: input, outputDir: output, verify: true });
    assert.deepEqual(again.skippedShards.sort(), [shardName(1, 3), shardName(3, 3)]);
  });
});

describe('TaskRunner writes', () => {
  it('go through the page cache, same bytes, where O_DIRECT refuses the buffer (not 4096-aligned)', async () => {
    const { root } = await checkpoint();
    const data = Buffer.alloc(1 << 20);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    await writeFile(join(root, 'in.bin'), data);
    // Without SIMD the kernel's memory is an ordinary ArrayBuffer, allocated off the 4096-byte alignment
    const results = [];
    for (const [simd, outputFile] of [
      [false, join(root, 'plain.bin')],
      [true, join(root, 'simd.bin')],
    ] as const) {
      await writeFile(outputFile, '');
      const runner = new TaskRunner(simd);
      const copy = {
        kind: 'copy',
        inputFile: join(root, 'in.bin'),
        outputFile,
        tensor: 't',
        verify: false,
        direct: true,
      } as const;
      results.push(runner.run({ ...copy, bytes: 600_000, inputOffset: 100, outputOffset: 100 }).directBytes);
      results.push(
        runner.run({ ...copy, bytes: data.length - 600_100, inputOffset: 600_100, outputOffset: 600_100 }).directBytes,
      );
      runner.closeFiles();
      assert.deepEqual((await readFile(outputFile)).subarray(100), data.subarray(100), outputFile);
    }
    assert.deepEqual(results.slice(0, 2), [0, 0]);
    if (takesDirectIo(root))
      assert.ok(results[2]! > 0 && results[3]! > 0, `O_DIRECT bytes with SIMD memory: ${results.join(', ')}`);
  });
});

describe('castFp8Checkpoint on bad input', () => {
  /** The cast must fail with a message matching `pattern` and leave nothing that looks complete. */
  async function failsWith(input: string, output: string, pattern: RegExp): Promise<void> {
    await assert.rejects(castFp8Checkpoint({ inputDir: input, outputDir: output }), pattern);
    const left = existsSync(output) ? await readdir(output) : [];
    assert.ok(!left.includes(indexFileName), 'no index');
    assert.deepEqual(
      left.filter((n) => n.endsWith('.partial')),
      [],
    );
    assert.notDeepEqual(await checkFp8CastComplete(input, output), { complete: true });
  }

  it('a truncated shard: names the file and the cut tensor', async () => {
    const { input, output } = await checkpoint();
    const file = join(input, shardName(1, 3));
    const header = await readHeader(file);
    await truncate(file, header.fileSize - 1000);
    await failsWith(input, output, /model-00001-of-00003\.safetensors is truncated.*tensor model\.\S+ is cut/);
  });

  it('a header that lies about a tensor size: names the file and the tensor', async () => {
    const { input, output } = await checkpoint();
    const file = join(input, shardName(3, 3));
    const bytes = await readFile(file);
    const length = Number(bytes.readBigUInt64LE(0));
    const json = bytes.subarray(8, 8 + length).toString('utf8');
    const lie = json.replace('"shape":[5]', '"shape":[6]');
    assert.notEqual(lie, json);
    await writeFile(file, Buffer.concat([bytes.subarray(0, 8), Buffer.from(lie), bytes.subarray(8 + length)]));
    await failsWith(input, output, /model-00003-of-00003\.safetensors: tensor model\.position_ids .*needs 48 bytes/);
  });

  it('a scale of the wrong shape: names the scale, its file and the weight', async () => {
    const shards = unitCheckpoint();
    const [, wrong] = fp8Weight('x', 128, 1000); // [1, 8] instead of [1, 3]
    const scale = shards[shardName(3, 3)]!.find((t) => t.name === 'model.layers.1.mlp.gate_proj.weight_scale_inv')!;
    Object.assign(scale, { shape: wrong.shape, data: wrong.data });
    const { input, output } = await checkpoint(shards);
    await failsWith(
      input,
      output,
      /model-00003-of-00003\.safetensors: scale model\.layers\.1\.mlp\.gate_proj\.weight_scale_inv is F32 \[1,8\], expected F32 \[1,3\]/,
    );
  });

  it('a missing scale: names the file and the tensor (or copies it on request, as slime does)', async () => {
    const shards = unitCheckpoint();
    shards[shardName(2, 3)] = shards[shardName(2, 3)]!.filter(
      (t) => t.name !== 'model.layers.1.mlp.up_proj.weight_scale_inv',
    );
    const { input, output } = await checkpoint(shards);
    await failsWith(
      input,
      output,
      /model-00002-of-00003\.safetensors: tensor model\.layers\.1\.mlp\.up_proj\.weight is F8_E4M3 but .*_scale_inv is in no shard/,
    );
    const warnings: string[] = [];
    await castFp8Checkpoint({
      inputDir: input,
      outputDir: output,
      allowMissingScale: true,
      onWarning: (w) => warnings.push(w),
    });
    assert.equal(warnings.length, 1);
    const header = await readHeader(join(output, shardName(2, 3)));
    assert.equal(header.tensors.get('model.layers.1.mlp.up_proj.weight')?.dtype, 'F8_E4M3');
  });

  it('an input shard lost mid-run: names the file and tensor, no index, no partial shard', async () => {
    const shards: Shards = {};
    for (let k = 1; k <= 3; k++)
      shards[shardName(k, 3)] = [...fp8Weight(`w${k}`, 256, 256), plainTensor(`n${k}`, 'BF16', [256])];
    const { input, output } = await checkpoint(shards);
    let removed = false;
    await assert.rejects(
      castFp8Checkpoint({
        inputDir: input,
        outputDir: output,
        threads: 1,
        onProgress: (p) => {
          if (p.shardsDone.length === 1 && !removed) {
            removed = true;
            void unlink(join(input, shardName(3, 3)));
          }
        },
      }),
      /model-00003-of-00003\.safetensors: cannot (open|read) .*(w3|n3)/,
    );
    const left = await readdir(output);
    assert.ok(!left.includes(indexFileName));
    assert.deepEqual(
      left.filter((n) => n.endsWith('.partial')),
      [],
    );
  });
});
