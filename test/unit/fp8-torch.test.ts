// Bit-exact against PyTorch: the native cast of the unit checkpoint (every FP8 code, subnormals, partial edge blocks,
// a cross-shard scale, NaN codes, non-FP8 tensors), compared by test/fp8/compare_with_torch.py with
// (w.float() * scale_expanded).to(torch.bfloat16), both directories loaded with the Python safetensors library.
import { after, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { castFp8Checkpoint } from '../../src/fp8/index.js';
import { unitCheckpoint, writeCheckpoint } from '../support/fp8-checkpoint.js';
import { python, repoRoot } from '../support/tiny-model.js';

let root = '';
after(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

it('the native cast equals the PyTorch reference bit for bit (NaNs as 0x7FFF) and loads with safetensors', async () => {
  root = await mkdtemp(join(tmpdir(), 'keel-fp8torch-'));
  const [input, output] = [join(root, 'in'), join(root, 'out')];
  await writeCheckpoint(input, unitCheckpoint());
  await castFp8Checkpoint({ inputDir: input, outputDir: output });
  const { stdout } = await execa(python, [join(repoRoot, 'test/fp8/compare_with_torch.py'), input, output]);
  const report = JSON.parse(stdout) as Record<string, unknown>;
  assert.equal(report.mismatches, 0, JSON.stringify(report.firstMismatch));
  assert.equal(report.nanMismatches, 0);
  assert.equal(report.copyMismatches, 0);
  assert.equal(report.indexOk, true);
  assert.equal(report.metadataOk, true);
  // What the checkpoint covers, so the comparison cannot pass on a thin sample.
  assert.equal(report.fp8Tensors, 5);
  assert.equal(report.copied, 5);
  assert.equal(report.codesCovered, 256);
  assert.ok((report.nanElements as number) > 0, 'NaN codes compared');
  assert.ok((report.subnormalOutputs as number) > 0, 'subnormal bf16 results compared');
  assert.ok((report.infOutputs as number) > 0, 'overflowing products compared');
});
