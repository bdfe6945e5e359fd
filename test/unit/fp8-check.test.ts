// The fp8-cast step's completeness check: index written last, no scales left, every shard framed correctly.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkFp8CastComplete, indexFileName } from '../../src/fp8/check.js';

/** A minimal valid safetensors file: one BF16 tensor of n elements. */
function safetensors(name: string, n: number): Buffer {
  let header = JSON.stringify({ [name]: { dtype: 'BF16', shape: [n], data_offsets: [0, 2 * n] } });
  header += ' '.repeat((8 - (header.length % 8)) % 8);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(header.length));
  return Buffer.concat([length, Buffer.from(header), Buffer.alloc(2 * n)]);
}

const roots: string[] = [];
after(async () => {
  await Promise.all(roots.map((root) => rm(root, { recursive: true, force: true })));
});

async function castOutput(): Promise<{ input: string; output: string }> {
  const root = await mkdtemp(join(tmpdir(), 'keel-fp8check-'));
  roots.push(root);
  const [input, output] = [join(root, 'in'), join(root, 'out')];
  await mkdir(input);
  await mkdir(output);
  const map = {
    a: 'model-00001-of-00002.safetensors',
    a_scale_inv: 'model-00002-of-00002.safetensors',
    b: 'model-00002-of-00002.safetensors',
  };
  await writeFile(join(input, indexFileName), JSON.stringify({ weight_map: map }));
  await writeFile(join(output, 'model-00001-of-00002.safetensors'), safetensors('a', 8));
  await writeFile(join(output, 'model-00002-of-00002.safetensors'), safetensors('b', 8));
  await writeFile(join(output, indexFileName), JSON.stringify({ metadata: {}, weight_map: { a: map.a, b: map.b } }));
  return { input, output };
}

describe('checkFp8CastComplete', () => {
  it('accepts a complete output', async () => {
    const { input, output } = await castOutput();
    assert.deepEqual(await checkFp8CastComplete(input, output), { complete: true });
  });
  it('refuses an output without its index (written last)', async () => {
    const { input, output } = await castOutput();
    await writeFile(join(output, indexFileName), '');
    const r = await checkFp8CastComplete(input, output);
    assert.equal(r.complete, false);
    assert.match(r.reason!, /model\.safetensors\.index\.json is missing/);
  });
  it('refuses a truncated shard', async () => {
    const { input, output } = await castOutput();
    await truncate(join(output, 'model-00002-of-00002.safetensors'), 30);
    const r = await checkFp8CastComplete(input, output);
    assert.equal(r.complete, false);
    assert.match(r.reason!, /model-00002-of-00002\.safetensors: (header|unreadable)/);
  });
  it('refuses a missing shard and an index that still names scales', async () => {
    const { input, output } = await castOutput();
    await writeFile(join(output, indexFileName), JSON.stringify({ weight_map: { a: 'x', a_scale_inv: 'y' } }));
    assert.match((await checkFp8CastComplete(input, output)).reason!, /still names 1 _scale_inv/);
    const again = await castOutput();
    await writeFile(join(again.output, 'model-00001-of-00002.safetensors'), '');
    assert.match(
      (await checkFp8CastComplete(again.input, again.output)).reason!,
      /model-00001-of-00002\.safetensors is truncated/,
    );
  });
});
