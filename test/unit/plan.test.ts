// The planner on the presets' figures, and one precise finding per misconfiguration.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { plan, type Finding } from '../../src/plan/index.js';
import { deepMerge, resolveSpecOrThrow, type PresetName } from '../../src/spec/index.js';

function planWith(overrides: Record<string, unknown>, preset: PresetName = 'deepseek-r1-128xh100') {
  return plan(resolveSpecOrThrow({ preset, overrides }));
}

describe('plan of the deepseek-r1-128xh100 preset', () => {
  const p = planWith({});
  it('has no error findings', () => {
    assert.deepEqual(
      p.findings.filter((f) => f.severity === 'error'),
      [],
    );
    assert.equal(p.ok, true);
  });
  it('derives the recipe layout', () => {
    assert.equal(p.layout.worldSize, 128);
    assert.equal(p.layout.dp, 1);
    assert.equal(p.layout.expertsPerRank, 8);
    assert.deepEqual(p.layout.stageLayers, [16, 16, 16, 13]);
    assert.deepEqual(p.conversion.stageLayers, [7, 8, 8, 8, 8, 8, 8, 6]);
    assert.equal(p.conversion.worldSize, 32);
    assert.equal(p.rollout.engines, 2);
    assert.equal(p.rollout.concurrencyPerDpRank, 128);
    assert.equal(p.batch.globalBatch, 256);
    assert.equal(p.batch.stepsPerRollout, 1);
    assert.equal(p.tokens.budgetPerCpGroup, 65536);
  });
  it('schedules 150 checkpoints from rollout 19 to 2999', () => {
    assert.equal(p.schedule.checkpoints, 150);
    assert.equal(p.schedule.firstCheckpoint, 19);
    assert.equal(p.schedule.lastCheckpoint, 2999);
  });
  it("points out that the recipe's prose does not add up to 61 layers", () => {
    const f = p.findings.find((x) => x.path === 'recipeClaims.stageLayers');
    assert.ok(f, 'expected a finding on the recipe prose');
    assert.match(f.message, /12, 12, 12, 13 layers \(49 in all\), but the model has 61; the flags give 16, 16, 16, 13/);
  });
  it('warns that a zero KL coefficient loads a reference model for nothing', () => {
    assert.ok(p.findings.some((f) => f.severity === 'warning' && f.path === 'grpo.klLossCoef'));
  });
  it('estimates CPU Adam host memory near the recipe figure (1.4-1.5 TB per node)', () => {
    assert.ok(
      p.memory.hostBytesPerNode > 1.39e12 && p.memory.hostBytesPerNode < 1.51e12,
      String(p.memory.hostBytesPerNode),
    );
  });
});

describe('plan of the other presets', () => {
  it('qwen3-4b-1node: TP2 over 8 GPUs gives DP 4 and 4 engines, no errors', () => {
    const p = planWith({}, 'qwen3-4b-1node');
    assert.equal(p.ok, true, JSON.stringify(p.findings));
    assert.equal(p.layout.dp, 4);
    assert.equal(p.rollout.engines, 4);
    assert.equal(p.memory.hostBytesPerNode, 0);
  });
  it('tiny-local: no errors', () => {
    const p = planWith({}, 'tiny-local');
    assert.equal(p.ok, true, JSON.stringify(p.findings));
  });
});

/** Each case: overrides on a preset -> exactly one new error (or warning) finding with this path and message. */
const cases: {
  name: string;
  overrides: Record<string, unknown>;
  path: string;
  message: RegExp;
  severity?: Finding['severity'];
  preset?: PresetName;
}[] = [
  {
    name: 'TP x PP x CP does not divide the world',
    overrides: { perf: { tensorModelParallelSize: 3 } },
    path: 'perf.tensorModelParallelSize',
    message: /TP 3 x PP 4 x CP 4 = 48 does not divide the 128 GPUs/,
  },
  {
    name: 'sequence parallel without TP',
    overrides: { perf: { tensorModelParallelSize: 1, contextParallelSize: 4 }, rollout: { globalBatchSize: 256 } },
    path: 'perf.sequenceParallel',
    message: /sequence parallel needs tensor parallel size > 1/,
  },
  {
    name: 'EP larger than the ranks of a stage',
    overrides: { perf: { expertModelParallelSize: 64 } },
    path: 'perf.expertModelParallelSize',
    message: /EP 64 x ETP 1 = 64 does not divide the 32 ranks of a pipeline stage/,
  },
  {
    name: 'routed experts not divisible by EP',
    overrides: { sglang: { sglangEpSize: 16 }, model: { architecture: { routedExperts: 240 } } },
    path: 'perf.expertModelParallelSize',
    message: /240 routed experts do not divide over EP 32/,
  },
  {
    name: 'last stage layers that leave an uneven split',
    overrides: { perf: { decoderLastPipelineNumLayers: 12 } },
    path: 'perf.decoderLastPipelineNumLayers',
    message: /49 layers do not split evenly over the 3 other stages/,
  },
  {
    name: 'conversion stages that do not add up',
    overrides: { conversion: { decoderLastPipelineNumLayers: 5 } },
    path: 'conversion.decoderLastPipelineNumLayers',
    message: /49 layers do not split evenly over the 6 other stages/,
  },
  {
    name: 'conversion EP over more ranks than a conversion stage has',
    overrides: { conversion: { expertModelParallelSize: 8 } },
    path: 'conversion.expertModelParallelSize',
    message: /EP 8 x ETP 1 = 8 does not divide the 4 ranks of a pipeline stage/,
  },
  {
    name: 'conversion gang larger than the cluster',
    overrides: {
      conversion: { nodes: 20 },
      cluster: { nodes: Array.from({ length: 16 }, (_, i) => ({ host: `n${i}`, gpus: 8 })) },
    },
    path: 'conversion.nodes',
    message: /the conversion gang needs 20 nodes but the cluster lists 16/,
  },
  {
    name: 'fewer nodes than training needs',
    overrides: {
      cluster: {
        nodes: [
          { host: 'a', gpus: 8 },
          { host: 'b', gpus: 8 },
          { host: 'c', gpus: 8 },
          { host: 'd', gpus: 8 },
        ],
      },
    },
    path: 'cluster.nodes',
    message: /training needs 16 nodes \(distributed.actorNumNodes\) but the cluster lists 4/,
  },
  {
    name: 'engine size does not divide the rollout GPUs',
    overrides: { sglang: { rolloutNumGpusPerEngine: 96, sglangEpSize: 32 } },
    path: 'sglang.rolloutNumGpusPerEngine',
    message: /96 GPUs per engine do not divide the 128 rollout GPUs/,
  },
  {
    name: 'SGLang EP that does not divide the engine',
    overrides: { sglang: { sglangEpSize: 128 } },
    path: 'sglang.sglangEpSize',
    message: /SGLang EP 128 does not divide the engine's 64 GPUs/,
  },
  {
    name: 'routed experts not divisible by SGLang EP',
    overrides: { model: { architecture: { routedExperts: 96, parameters: 262e9 } } },
    path: 'sglang.sglangEpSize',
    message: /96 routed experts do not divide over SGLang EP 64/,
  },
  {
    name: 'SGLang DP that does not divide the engine',
    overrides: { sglang: { sglangDpSize: 6, sglangServerConcurrency: 1020 } },
    path: 'sglang.sglangDpSize',
    message: /SGLang DP 6 does not divide the engine's 64 GPUs/,
  },
  {
    name: 'rollout samples not a multiple of the global batch',
    overrides: { rollout: { globalBatchSize: 96 } },
    path: 'rollout.globalBatchSize',
    message: /rollout batch 32 x 8 samples = 256 is not a multiple of the global batch 96/,
  },
  {
    name: 'over-sampling smaller than the rollout batch',
    overrides: { rollout: { overSamplingBatchSize: 16 } },
    path: 'rollout.overSamplingBatchSize',
    message: /over-sampling batch 16 is smaller than the rollout batch 32/,
  },
  {
    name: 'nonzero-std filter with one sample per prompt',
    overrides: { rollout: { nSamplesPerPrompt: 1, globalBatchSize: 32 } },
    path: 'rollout.nSamplesPerPrompt',
    message: /the nonzero-std filter needs at least 2 samples per prompt/,
  },
  {
    name: 'eps-clip-high below eps-clip',
    overrides: { grpo: { epsClipHigh: 0.1 } },
    path: 'grpo.epsClipHigh',
    message: /eps-clip-high 0.1 is below eps-clip 0.2/,
  },
  {
    name: 'KL loss with no step producing the reference',
    overrides: {
      steps: {
        convert: null,
        cluster: { kind: 'ray-cluster', needs: ['cast'] },
        inputs: { needs: ['cast', 'prompt-data', 'eval-data'] },
      },
    },
    path: 'grpo.useKlLoss',
    message: /KL loss needs a reference model, but no step produces \/data\/keel\/DeepSeek-R1_torch_dist\//,
  },
  {
    name: 'dynamic batch size without a token budget',
    overrides: { perf: { maxTokensPerGpu: null } },
    path: 'perf.maxTokensPerGpu',
    message: /dynamic batch size needs max-tokens-per-gpu/,
  },
  {
    name: 'host memory too small for CPU Adam',
    overrides: { cluster: { hostMemoryBytes: 1_000_000_000_000 } },
    path: 'cluster.hostMemoryBytes',
    message: /CPU Adam needs ~1.4 TB of host memory per node .* nodes have 1.0 TB/,
  },
  {
    name: 'GPU memory too small without CPU Adam',
    overrides: {
      optimizer: { optimizerCpuOffload: false, overlapCpuOptimizerD2hH2d: false, usePrecisionAwareOptimizer: false },
    },
    path: 'optimizer.optimizerCpuOffload',
    message: /weights, gradients and Adam state need ~\d+(\.\d)? GB per GPU, more than 90% of 80 GiB/,
  },
  {
    name: 'not enough storage for the run',
    overrides: { storage: { freeBytes: 50_000_000_000_000 } },
    path: 'storage.freeBytes',
    message: /the run needs ~107 TB at \/data\/keel .* 50.0 TB free/,
  },
  {
    name: 'non-colocated without rollout GPUs',
    overrides: { distributed: { colocate: false } },
    path: 'distributed.rolloutNumGpus',
    message: /without colocate, rollout needs GPUs of its own and none are given/,
  },
  {
    name: 'a node with fewer GPUs than training places on it',
    overrides: {
      cluster: { nodes: Array.from({ length: 16 }, (_, i) => ({ host: `n${i}`, gpus: i === 5 ? 4 : 8 })) },
    },
    path: 'cluster.nodes[5].gpus',
    message: /node n5 has 4 GPUs; training places 8 per node/,
  },
  {
    name: 'a secret pasted into the spec',
    overrides: { extraArgs: ['--wandb-key', '0123456789abcdef0123456789abcdef01234567'] },
    path: 'extraArgs[1]',
    message: /looks like a W&B API key; secrets never go into a spec/,
  },
  {
    name: 'eval and save intervals that never line up',
    overrides: { eval: { evalInterval: 30 } },
    path: 'eval.evalInterval',
    message: /eval every 30 and save every 20 rollouts rarely coincide/,
    severity: 'warning',
  },
  {
    name: 'no retention for 150 checkpoints',
    overrides: { policies: { retention: { keepLast: null, keepEvery: null } } },
    path: 'policies.retention.keepLast',
    message: /no retention: all 150 checkpoints of ~9.4 TB are kept \(1.4 PB\)/,
    severity: 'warning',
  },
];

/** null in overrides deletes a key (so a case can remove a preset field). */
function dropNulls(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(dropNulls);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([, v]) => v !== null)
        .map(([k, v]) => [k, dropNulls(v)]),
    );
  }
  return value;
}

describe('misconfigurations: one precise finding each', () => {
  for (const c of cases) {
    it(c.name, () => {
      const preset = c.preset ?? 'deepseek-r1-128xh100';
      const baseline = planWith({}, preset);
      const { presets } = require_presets();
      const raw = dropNulls(deepMerge(presets[preset], c.overrides));
      const p = plan(resolveSpecOrThrow(raw));
      const severity = c.severity ?? 'error';
      const key = (f: Finding) => `${f.severity} ${f.path} ${f.message}`;
      const before = new Set(baseline.findings.map(key));
      const added = p.findings.filter((f) => f.severity === severity && !before.has(key(f)));
      assert.equal(added.length, 1, `expected one new ${severity}, got:\n${added.map(key).join('\n')}`);
      assert.equal(added[0]!.path, c.path);
      assert.match(added[0]!.message, c.message);
      if (severity === 'error') assert.equal(p.ok, false);
    });
  }
  it('covers at least 20 distinct misconfigurations', () => {
    assert.ok(new Set(cases.map((c) => c.path + c.message.source)).size >= 20);
  });
});

import * as presetModule from '../../src/spec/presets.js';
function require_presets() {
  return presetModule;
}
