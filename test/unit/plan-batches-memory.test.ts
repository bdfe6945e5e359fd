// The micro-batch rule of static batching, whether the weights fit one rollout engine, and null in overrides.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { plan } from '../../src/plan/index.js';
import { loadSpec } from '../../src/spec/load.js';
import { resolveSpecOrThrow, type PresetName } from '../../src/spec/index.js';

const planWith = (overrides: Record<string, unknown>, preset: PresetName = 'qwen3-4b-1node') =>
  plan(resolveSpecOrThrow({ preset, overrides }));
const errorsOf = (p: ReturnType<typeof plan>) => p.findings.filter((f) => f.severity === 'error');

describe('micro-batch rule (static batching)', () => {
  // qwen3-4b-1node: TP2 over 8 GPUs -> DP 4; global batch 256 -> 64 samples per DP rank
  const staticBatching = { perf: { useDynamicBatchSize: false, maxTokensPerGpu: null } };
  it('global batch divisible by DP x micro-batch: no finding', () => {
    assert.deepEqual(
      errorsOf(planWith({ ...staticBatching, perf: { ...staticBatching.perf, microBatchSize: 4 } })),
      [],
    );
  });
  it('a micro-batch size that does not divide the share of a DP rank is an error naming the sizes that do', () => {
    const p = planWith({ perf: { useDynamicBatchSize: false, maxTokensPerGpu: null, microBatchSize: 3 } });
    const [e, ...rest] = errorsOf(p);
    assert.equal(rest.length, 0, JSON.stringify(rest));
    assert.equal(e?.path, 'perf.microBatchSize');
    assert.equal(
      e?.message,
      'with static batching the global batch 256 must divide by DP 4 x micro-batch size 3 = 12: Megatron stops at start-up',
    );
    assert.equal(
      e?.fix,
      'set perf.microBatchSize to one of 1, 2, 4, 8, 16, or rollout.globalBatchSize to a multiple of 12',
    );
  });
  it('with the default micro-batch of 1 a global batch that does not split over DP is one error, not two', () => {
    const p = planWith({
      perf: { useDynamicBatchSize: false, maxTokensPerGpu: null },
      rollout: { globalBatchSize: 254, rolloutBatchSize: 127, nSamplesPerPrompt: 2 },
    });
    assert.deepEqual(
      errorsOf(p).map((f) => [f.path, f.message]),
      [['rollout.globalBatchSize', 'global batch 254 does not split over 4 data-parallel ranks']],
    );
  });
  it('dynamic batch size: the micro-batch size is noted as unused, never an error', () => {
    const p = planWith({ perf: { microBatchSize: 3 } });
    assert.deepEqual(errorsOf(p), []);
    assert.ok(p.findings.some((f) => f.severity === 'info' && f.path === 'perf.microBatchSize'));
  });
});

describe('rollout engine memory', () => {
  it('R1 (FP8 release, 64-GPU engines, EP 64): about 12.5 GB of weights per GPU of a 0.7 x 80 GiB pool', () => {
    const p = planWith({}, 'deepseek-r1-128xh100');
    assert.ok(p.engineMemory.bytesPerParameter > 1 && p.engineMemory.bytesPerParameter < 1.1);
    assert.ok(p.engineMemory.weightBytesPerGpu > 11e9 && p.engineMemory.weightBytesPerGpu < 14e9);
    assert.equal(p.engineMemory.staticPoolBytesPerGpu, 0.7 * 80 * 2 ** 30);
    assert.equal(p.ok, true);
  });
  it('R1 on 8-GPU engines does not fit: an error naming the fix', () => {
    const p = planWith({ sglang: { rolloutNumGpusPerEngine: 8, sglangEpSize: 8 } }, 'deepseek-r1-128xh100');
    const e = errorsOf(p).find((f) => f.path === 'sglang.rolloutNumGpusPerEngine');
    assert.match(
      e?.message ?? '',
      /^the model does not fit one rollout engine: \d+(\.\d)? GB of weights per GPU of an engine of 8 \(EP 8, attention TP 1\)/,
    );
    assert.match(
      e?.fix ?? '',
      /^raise sglang\.rolloutNumGpusPerEngine \(and sglang\.sglangEpSize\) to spread the weights, or sglang\.sglangMemFractionStatic/,
    );
  });
  it('weights that leave under 20% of the pool for the KV cache: a warning', () => {
    // Qwen3-4B in BF16 on one 2-GPU engine: 4 GB per GPU; 4.5 GiB GPUs at 0.9 leave ~4.3 GB
    const p = planWith({ cluster: { gpuMemoryGiB: 4.8 }, sglang: { sglangMemFractionStatic: 0.9 } });
    const w = p.findings.find((f) => f.path === 'sglang.sglangMemFractionStatic');
    assert.equal(w?.severity, 'warning', JSON.stringify(p.findings));
    assert.match(w?.message ?? '', /less than 20% of the static pool for the KV cache/);
  });
});

describe('Ray dashboard exposure', () => {
  it("binds the head's own address by default: no finding", () => {
    assert.equal(
      planWith({}, 'deepseek-r1-128xh100').findings.find((f) => f.path === 'rayHead.dashboardHost'),
      undefined,
    );
  });
  it('binding every interface is a warning that says why and how to fix it', () => {
    const f = planWith({ rayHead: { dashboardHost: '0.0.0.0' } }, 'deepseek-r1-128xh100').findings.find(
      (x) => x.path === 'rayHead.dashboardHost',
    );
    assert.equal(f?.severity, 'warning');
    assert.match(
      f?.message ?? '',
      /binds every interface \(port 8265\): its Jobs API has no authentication, so anyone who reaches that port can submit a job and run any code on the cluster/,
    );
    assert.match(f?.fix ?? '', /drop rayHead\.dashboardHost \(default: the head node's own address\)/);
  });
});

describe('null removes a key, at any depth, from -f overlays and --set', () => {
  async function overlay(yaml: string): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'keel-null-'));
    await writeFile(join(dir, 'overlay.yaml'), yaml);
    return join(dir, 'overlay.yaml');
  }
  it('a top-level key: null in an -f overlay removes it from the preset', async () => {
    const result = await loadSpec({
      preset: 'deepseek-r1-128xh100',
      overlays: [await overlay('recipeClaims: null\n')],
    });
    assert.ok(result.ok);
    assert.equal(result.spec.recipeClaims, undefined);
  });
  it('a nested key: null in an overlay, and --set k=null, remove keys (a preset step, a field)', async () => {
    const result = await loadSpec({
      preset: 'deepseek-r1-128xh100',
      overlays: [await overlay('steps:\n  cast: null\n  convert:\n    needs: [probe]\n')],
      sets: ['grpo.entropyCoef=null'],
    });
    assert.ok(result.ok, JSON.stringify(!result.ok && result.problems));
    assert.equal(result.spec.steps.cast, undefined);
    assert.equal(result.spec.grpo.entropyCoef, undefined);
  });
  it('--set k=null after an overlay that sets k removes it; a later overlay can set it again', async () => {
    const removed = await loadSpec({
      preset: 'tiny-local',
      overlays: [await overlay('rayHead:\n  isolateNodes: { portBase: 28100 }\n')],
      sets: ['rayHead.isolateNodes=null'],
    });
    assert.ok(removed.ok);
    assert.equal(removed.spec.rayHead.isolateNodes, undefined);
    const again = await loadSpec({
      preset: 'tiny-local',
      overlays: [
        await overlay('rayHead: { isolateNodes: null }\n'),
        await overlay('rayHead: { isolateNodes: { portBase: 28200 } }\n'),
      ],
    });
    assert.ok(again.ok);
    assert.deepEqual(again.spec.rayHead.isolateNodes, { portBase: 28200 });
  });
  it("null for a key the preset lacks removes nothing and is not an error; 'null' as a string needs quotes", async () => {
    const result = await loadSpec({
      preset: 'tiny-local',
      sets: ['perf.microBatchSize=null', 'model.revision="null"'],
    });
    assert.ok(result.ok, JSON.stringify(!result.ok && result.problems));
    assert.equal(result.spec.perf.microBatchSize, undefined);
    assert.equal(result.spec.model.revision, 'null');
  });
});
