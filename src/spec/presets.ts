// Presets: complete specs that reproduce known recipes. Pure data, safe to import from workflow code.
import { hangFromEstimates } from './hang.js';
import type { SpecInput } from './schema.js';

function numberedNodes(count: number, gpus: number): { host: string; gpus: number }[] {
  return Array.from({ length: count }, (_, i) => ({ host: `node${String(i + 1).padStart(2, '0')}`, gpus }));
}

/**
 * The recipe's prompt and eval data, staged into shared storage ($BASE_DIR, as slime's upstream R1 script keeps
 * them): slime's RolloutManager runs on whichever node Ray picks, so node-local copies are not enough.
 */
const datasetSteps = {
  'prompt-data': {
    kind: 'hf-download',
    repoType: 'dataset',
    repo: 'zhuzilin/dapo-math-17k',
    localDir: 'dapo-math-17k',
    needs: ['probe'] as string[],
  },
  'eval-data': {
    kind: 'hf-download',
    repoType: 'dataset',
    repo: 'zhuzilin/aime-2024',
    localDir: 'aime-2024',
    needs: ['probe'] as string[],
  },
} as const;

/**
 * Estimates for the ETTR model of keel plan and R1's hang timeouts, not measurements (docs/reliability.md derives
 * each; measure and override): a save writes ~9.4 TB at ~10 GB/s; a restart reads it back and starts the SGLang
 * engines; a rollout generates responses of up to 32k tokens. The failure rate is the default, Llama 3's.
 */
const r1Reliability = {
  checkpointSaveTime: '16m',
  restartTime: '25m',
  rolloutTime: '20m',
  // What-ifs (the seed uses neither lever): an async save stages ~73 GB a GPU to host memory before it returns (seconds
  // of copying, plus planning the sharded save): 1 min, generously; the share of failures that are SGLang engine
  // failures slime would restart inside the job is an assumption to replace with a count from your own runs.
  asyncSaveBlockingTime: '1m',
  engineFailureShare: 0.2,
};

/**
 * The DeepSeek-R1 recipe on 128 H100s (16 nodes x 8 GPUs), every flag and value as the recipe gives it
 * (seed/deepseek-r1-recipe.txt). Host names are placeholders: give the real ones with `cluster.hostfile`
 * (an MPI hostfile, lines `ip slot=8`) or `cluster.nodes`. The three flags `--actor-num-nodes 16
 * --actor-num-gpus-per-node 8 --colocate` come from slime's run-deepseek-r1.sh, which the recipe runs.
 */
const deepseekR1: SpecInput = {
  name: 'deepseek-r1',
  preset: 'deepseek-r1-128xh100',
  cluster: {
    nodes: numberedNodes(16, 8),
    gpusPerNode: 8,
    executor: { kind: 'ssh', user: 'root' },
    gpuMemoryGiB: 80,
  },
  storage: { baseDir: '/data/keel' },
  slime: {
    dir: '/root/slime',
    megatronPath: '/root/Megatron-LM/',
    python: 'python3',
    // what train.py needs on every node, imported by the probe with the job's environment
    imports: ['sglang', 'deep_ep', 'megatron', 'slime'],
  },
  model: {
    repo: 'deepseek-ai/DeepSeek-R1',
    revision: 'main',
    hfTokenEnv: 'HF_TOKEN',
    downloadDir: 'DeepSeek-R1',
    bf16Dir: 'DeepSeek-R1-bf16/',
    torchDistDir: 'DeepSeek-R1_torch_dist/',
    saveDir: 'DeepSeek-R1_slime/',
    modelScript: 'scripts/models/deepseek-v3.sh',
    architecture: {
      numLayers: 61,
      hiddenSize: 7168,
      ffnHiddenSize: 18432,
      numAttentionHeads: 128,
      firstDenseLayers: 3,
      routedExperts: 256,
      sharedExperts: 1,
      expertsPerToken: 8,
      moeFfnHiddenSize: 2048,
      vocabSize: 129280,
      mtpLayers: 1,
      parameters: 671e9,
    },
    fp8Bytes: 688_600_000_000,
    bf16Bytes: 1_370_000_000_000,
  },
  conversion: {
    nodes: 4,
    nprocPerNode: 8,
    masterPort: 12345,
    tensorModelParallelSize: 1,
    pipelineModelParallelSize: 8,
    expertTensorParallelSize: 1,
    expertModelParallelSize: 4,
    decoderFirstPipelineNumLayers: 7,
    decoderLastPipelineNumLayers: 6,
  },
  rayHead: {
    port: 6379,
    dashboardPort: 8265,
    // upstream's job environment (scripts/run-deepseek-r1.sh at slime 624b824a): its runtime_env, and the
    // PYTHONUNBUFFERED it exports before `ray job submit`
    jobEnv: {
      CUDA_DEVICE_MAX_CONNECTIONS: '1',
      NVSHMEM_DISABLE_NCCL: '1',
      LD_LIBRARY_PATH: '/usr/local/nvidia/lib:/usr/local/nvidia/lib64:/sgl-workspace/nvshmem/install/lib/',
      PYTHONUNBUFFERED: '1',
    },
  },
  distributed: { actorNumNodes: 16, actorNumGpusPerNode: 8, colocate: true },
  ckpt: {
    hfCheckpoint: 'DeepSeek-R1/',
    refLoad: 'DeepSeek-R1_torch_dist/',
    load: 'DeepSeek-R1_slime/',
    save: 'DeepSeek-R1_slime/',
    saveInterval: 20,
  },
  perf: {
    tensorModelParallelSize: 8,
    sequenceParallel: true,
    pipelineModelParallelSize: 4,
    contextParallelSize: 4,
    expertModelParallelSize: 32,
    expertTensorParallelSize: 1,
    decoderLastPipelineNumLayers: 13,
    recomputeGranularity: 'full',
    recomputeMethod: 'uniform',
    recomputeNumLayers: 1,
    useDynamicBatchSize: true,
    maxTokensPerGpu: 16384,
  },
  grpo: {
    advantageEstimator: 'grpo',
    useKlLoss: true,
    klLossCoef: 0.0,
    klLossType: 'low_var_kl',
    entropyCoef: 0.0,
    epsClip: 0.2,
    epsClipHigh: 0.28,
  },
  optimizer: {
    optimizer: 'adam',
    lr: 1e-6,
    lrDecayStyle: 'constant',
    weightDecay: 0.1,
    adamBeta1: 0.9,
    adamBeta2: 0.98,
    optimizerCpuOffload: true,
    overlapCpuOptimizerD2hH2d: true,
    usePrecisionAwareOptimizer: true,
  },
  sglang: {
    rolloutNumGpusPerEngine: 64,
    sglangMemFractionStatic: 0.7,
    sglangEpSize: 64,
    sglangEnableDpAttention: true,
    sglangDpSize: 8,
    sglangMoeDenseTpSize: 1,
    sglangEnableDpLmHead: true,
    sglangMoeA2aBackend: 'deepep',
    sglangDeepepMode: 'auto',
    sglangServerConcurrency: 1024,
  },
  misc: {
    attentionDropout: 0.0,
    hiddenDropout: 0.0,
    accumulateAllreduceGradsInFp32: true,
    attentionSoftmaxInFp32: true,
    attentionBackend: 'flash',
    moeEnableDeepep: true,
    moeTokenDispatcherType: 'flex',
  },
  rollout: {
    promptData: 'dapo-math-17k/dapo-math-17k.jsonl',
    inputKey: 'prompt',
    labelKey: 'label',
    applyChatTemplate: true,
    rolloutShuffle: true,
    rmType: 'deepscaler',
    numRollout: 3000,
    rolloutBatchSize: 32,
    nSamplesPerPrompt: 8,
    rolloutMaxResponseLen: 32768,
    rolloutTemperature: 1,
    globalBatchSize: 256,
    balanceData: true,
    overSamplingBatchSize: 64,
    dynamicSamplingFilterPath: 'slime.rollout.filter_hub.dynamic_sampling_filters.check_reward_nonzero_std',
  },
  eval: {
    evalInterval: 20,
    evalPromptData: [{ name: 'aime', path: 'aime-2024/aime-2024.jsonl' }],
    nSamplesPerEvalPrompt: 16,
    evalMaxResponseLen: 16384,
    evalTopP: 1,
  },
  steps: {
    probe: { kind: 'probe' },
    // after the probe: it checks that the worker sees storage.baseDir as the nodes do before 689 GB arrive there
    download: { kind: 'hf-download', needs: ['probe'] },
    ...datasetSteps,
    // keel's native cast: no GPU, no Python, 2.6x faster than slime's tool on an H200 node, and the same bytes
    // in every file (likeSlime); `engine: slime` runs slime's tools/fp8_cast_bf16.py instead
    cast: { kind: 'fp8-cast', needs: ['download'], engine: 'native', likeSlime: true },
    convert: { kind: 'torch-dist-convert', needs: ['cast', 'probe'] },
    cluster: { kind: 'ray-cluster', needs: ['convert'] },
    // every input path training reads, on every node and the same there, before the job is submitted
    inputs: { kind: 'probe', inputs: true, needs: ['convert', 'prompt-data', 'eval-data'] },
    train: { kind: 'train', needs: ['cluster', 'inputs'] },
  },
  policies: {
    // 150 checkpoints of ~9.4 TB each would need ~1.4 PB: keep the last 3, every 500th and the best.
    retention: { keepLast: 3, keepEvery: 500, keepBest: 1 },
    // Twice each phase's expected length (src/spec/hang.ts): start-up 90m (a 25 min restart, then the eval before
    // rollout 0 and rollout 0), rollout and eval 40m, save 32m. The 30m defaults would call a healthy start-up hung.
    hang: hangFromEstimates(r1Reliability),
  },
  reliability: r1Reliability,
  recipeClaims: {
    stageLayers: [12, 12, 12, 13],
    source: 'recipe prose: "First 3 pipeline stages: 12 layers each (36 total); last pipeline stage: 13 layers"',
  },
};

/**
 * slime's small example: Qwen3-4B on one node of 8 GPUs (run-qwen3-4B.sh): TP2, colocated, no CPU Adam,
 * no dynamic sampling. The release is BF16, so there is no cast step.
 */
const qwen3_4b: SpecInput = {
  name: 'qwen3-4b',
  preset: 'qwen3-4b-1node',
  cluster: { nodes: [{ host: 'localhost', gpus: 8 }], gpusPerNode: 8, executor: { kind: 'local' }, gpuMemoryGiB: 80 },
  storage: { baseDir: '/root' },
  slime: { dir: '/root/slime', megatronPath: '/root/Megatron-LM/', python: 'python3' },
  model: {
    repo: 'Qwen/Qwen3-4B',
    revision: 'main',
    hfTokenEnv: 'HF_TOKEN',
    downloadDir: 'Qwen3-4B',
    bf16Dir: 'Qwen3-4B',
    torchDistDir: 'Qwen3-4B_torch_dist',
    saveDir: 'Qwen3-4B_slime/',
    modelScript: 'scripts/models/qwen3-4B.sh',
    architecture: {
      numLayers: 36,
      hiddenSize: 2560,
      ffnHiddenSize: 9728,
      numAttentionHeads: 32,
      vocabSize: 151936,
      parameters: 4.02e9,
    },
    bf16Bytes: 8_050_000_000,
  },
  conversion: { nodes: 1, nprocPerNode: 1, masterPort: 12345 },
  rayHead: {
    port: 6379,
    dashboardPort: 8265,
    jobEnv: { CUDA_DEVICE_MAX_CONNECTIONS: '1' },
  },
  distributed: { actorNumNodes: 1, actorNumGpusPerNode: 8, colocate: true },
  ckpt: {
    hfCheckpoint: 'Qwen3-4B',
    refLoad: 'Qwen3-4B_torch_dist',
    load: 'Qwen3-4B_slime/',
    save: 'Qwen3-4B_slime/',
    saveInterval: 20,
  },
  perf: {
    tensorModelParallelSize: 2,
    sequenceParallel: true,
    pipelineModelParallelSize: 1,
    contextParallelSize: 1,
    expertModelParallelSize: 1,
    expertTensorParallelSize: 1,
    recomputeGranularity: 'full',
    recomputeMethod: 'uniform',
    recomputeNumLayers: 1,
    useDynamicBatchSize: true,
    maxTokensPerGpu: 9216,
  },
  grpo: {
    advantageEstimator: 'grpo',
    useKlLoss: true,
    klLossCoef: 0.0,
    klLossType: 'low_var_kl',
    entropyCoef: 0.0,
    epsClip: 0.2,
    epsClipHigh: 0.28,
  },
  optimizer: {
    optimizer: 'adam',
    lr: 1e-6,
    lrDecayStyle: 'constant',
    weightDecay: 0.1,
    adamBeta1: 0.9,
    adamBeta2: 0.98,
  },
  sglang: { rolloutNumGpusPerEngine: 2, sglangMemFractionStatic: 0.7 },
  misc: {
    attentionDropout: 0.0,
    hiddenDropout: 0.0,
    accumulateAllreduceGradsInFp32: true,
    attentionSoftmaxInFp32: true,
    attentionBackend: 'flash',
  },
  rollout: {
    promptData: 'dapo-math-17k/dapo-math-17k.jsonl',
    inputKey: 'prompt',
    labelKey: 'label',
    applyChatTemplate: true,
    rolloutShuffle: true,
    rmType: 'deepscaler',
    numRollout: 3000,
    rolloutBatchSize: 32,
    nSamplesPerPrompt: 8,
    rolloutMaxResponseLen: 8192,
    rolloutTemperature: 0.8,
    promptMaxTokens: 1024,
    globalBatchSize: 256,
    balanceData: true,
  },
  eval: {
    evalInterval: 20,
    evalPromptData: [{ name: 'aime', path: 'aime-2024/aime-2024.jsonl' }],
    nSamplesPerEvalPrompt: 16,
    evalMaxResponseLen: 16384,
    evalTopP: 0.7,
  },
  steps: {
    probe: { kind: 'probe' },
    // after the probe: it checks that the worker sees storage.baseDir as the nodes do before 689 GB arrive there
    download: { kind: 'hf-download', needs: ['probe'] },
    ...datasetSteps,
    convert: { kind: 'torch-dist-convert', needs: ['download', 'probe'] },
    cluster: { kind: 'ray-cluster', needs: ['convert'] },
    // every input path training reads, on every node and the same there, before the job is submitted
    inputs: { kind: 'probe', inputs: true, needs: ['convert', 'prompt-data', 'eval-data'] },
    train: { kind: 'train', needs: ['cluster', 'inputs'] },
  },
  policies: { retention: { keepLast: 5, keepBest: 1 } },
};

/**
 * The embedded default: the R1 DAG on a local cluster of 4 loopback nodes with small real stand-ins of slime's
 * programs (workloads/tiny). Paths under `slime.dir` are resolved against the keel checkout at load time.
 */
const tinyLocal: SpecInput = {
  name: 'tiny-local',
  preset: 'tiny-local',
  cluster: {
    nodes: [1, 2, 3, 4].map((i) => ({ host: `127.0.1.${i}`, gpus: 2 })),
    spares: [{ host: '127.0.1.5', gpus: 2 }],
    gpusPerNode: 2,
    executor: { kind: 'local' },
    gpuMemoryGiB: 1,
    stateDir: '.keel/local/nodes/{node}',
    // The stand-ins and their tools (python3, torchrun, ray, hf) come from the project's .venv.
    env: { PATH: '.venv/bin:/usr/local/bin:/usr/bin:/bin' },
  },
  storage: { baseDir: '.keel/local/shared' },
  slime: { dir: 'workloads/tiny', megatronPath: 'workloads/tiny', python: '.venv/bin/python3' },
  model: {
    repo: 'keel-tiny/tiny-v3-fp8',
    revision: 'main',
    hfEndpointEnv: 'KEEL_HF_ENDPOINT',
    hfTokenEnv: 'HF_TOKEN',
    downloadDir: 'tiny-v3-fp8',
    bf16Dir: 'tiny-v3-bf16/',
    torchDistDir: 'tiny-v3_torch_dist/',
    saveDir: 'tiny-v3_slime/',
    modelScript: 'scripts/models/tiny-v3.sh',
    architecture: {
      numLayers: 4,
      hiddenSize: 160,
      ffnHiddenSize: 320,
      numAttentionHeads: 4,
      firstDenseLayers: 1,
      routedExperts: 8,
      sharedExperts: 1,
      expertsPerToken: 2,
      moeFfnHiddenSize: 96,
      vocabSize: 49,
      parameters: 1.2e6,
    },
  },
  conversion: {
    nodes: 4,
    nprocPerNode: 1,
    masterPort: 29512,
    tensorModelParallelSize: 1,
    pipelineModelParallelSize: 4,
    expertTensorParallelSize: 1,
    expertModelParallelSize: 1,
  },
  rayHead: {
    port: 6379,
    dashboardHost: '127.0.1.1',
    dashboardPort: 8265,
    jobEnv: {},
    isolateNodes: { portBase: 31000 },
    stopStaleRay: false,
  },
  distributed: { actorNumNodes: 4, actorNumGpusPerNode: 2, colocate: true },
  ckpt: { saveInterval: 20 },
  perf: {
    tensorModelParallelSize: 1,
    pipelineModelParallelSize: 1,
    contextParallelSize: 1,
    expertModelParallelSize: 8,
    expertTensorParallelSize: 1,
    useDynamicBatchSize: true,
    maxTokensPerGpu: 512,
  },
  grpo: {
    advantageEstimator: 'grpo',
    useKlLoss: true,
    klLossCoef: 0.001,
    klLossType: 'low_var_kl',
    entropyCoef: 0.0,
    epsClip: 0.2,
    epsClipHigh: 0.28,
  },
  optimizer: {
    optimizer: 'adam',
    lr: 1e-4,
    lrDecayStyle: 'constant',
    // Warmed up over the first 20 rollouts: Adam's first steps are about lr on every weight whatever its gradient's
    // noise, and without warmup the eval fell first (seed 2's model 0.669 -> 0.579 after 20 rollouts; at lr 1.5e-4
    // 0.669 -> 0.524), then climbed back.
    lrWarmupIters: 20,
    weightDecay: 0.0,
    adamBeta1: 0.9,
    adamBeta2: 0.98,
  },
  sglang: { rolloutNumGpusPerEngine: 2 },
  rollout: {
    promptData: 'toy-addition/train.jsonl',
    inputKey: 'prompt',
    labelKey: 'label',
    rolloutShuffle: true,
    rmType: 'toy',
    numRollout: 100,
    // 16 prompts x 8 samples a rollout, one optimizer step on the 128: with 8 prompts the step is noisier and
    // bench:learning fails (generator 4's models, lr warmup: +0.081, +0.016, +0.080 against +0.182, +0.155, +0.155 with
    // 16; lr 2e-4 at 8 prompts undid the pretraining). A rollout costs about 13% more (seed 1's train step of 100
    // rollouts: 193 s against 171 s).
    rolloutBatchSize: 16,
    nSamplesPerPrompt: 8,
    rolloutMaxResponseLen: 8,
    // Sampled at 1.5 (the evals too: the eval temperature defaults to the rollout's): a tiny model right 7 times in 10
    // greedy is right 4 to 5 times in 10 there, room for GRPO to sharpen it.
    rolloutTemperature: 1.5,
    globalBatchSize: 128,
    overSamplingBatchSize: 32,
    dynamicSamplingFilterPath: 'slime.rollout.filter_hub.dynamic_sampling_filters.check_reward_nonzero_std',
    promptMaxTokens: 32,
  },
  eval: {
    evalInterval: 20,
    evalPromptData: [{ name: 'toy', path: 'toy-addition/eval.jsonl' }],
    nSamplesPerEvalPrompt: 4,
    evalMaxResponseLen: 8,
    evalTopP: 1,
  },
  steps: {
    probe: { kind: 'probe' },
    // (the downloads wait for the probe, as R1's do: the worker must see storage as the nodes do before any download)
    download: { kind: 'hf-download', verifySha256: true, needs: ['probe'] },
    // the toy task's prompts and evals, from the local hub's dataset repo into shared storage
    data: {
      kind: 'hf-download',
      repoType: 'dataset',
      repo: 'keel-tiny/toy-addition',
      localDir: 'toy-addition',
      verifySha256: true,
      needs: ['probe'],
    },
    cast: { kind: 'fp8-cast', needs: ['download'], engine: 'slime' },
    convert: { kind: 'torch-dist-convert', needs: ['cast', 'probe'] },
    cluster: { kind: 'ray-cluster', needs: ['convert'] },
    inputs: { kind: 'probe', inputs: true, needs: ['convert', 'data'] },
    train: { kind: 'train', needs: ['cluster', 'inputs'] },
  },
  policies: {
    heartbeatTimeout: '20s',
    initialRetryInterval: '1s',
    hang: { startup: '5m', rollout: '2m', checkpointSave: '2m' },
    retention: { keepLast: 2, keepBest: 1 },
  },
  // The local cluster's own pace (docs/reliability.md): ~1 s a rollout and a save of a 17 MB checkpoint, about a
  // minute from a failure to the next rollout (npm run bench:faults); the failure rate is the default, Llama 3's.
  reliability: { checkpointSaveTime: '1s', restartTime: '60s', rolloutTime: '1s' },
};

export const presets = {
  'deepseek-r1-128xh100': deepseekR1,
  'qwen3-4b-1node': qwen3_4b,
  'tiny-local': tinyLocal,
} as const satisfies Record<string, SpecInput>;

export type PresetName = keyof typeof presets;
export const presetNames = Object.keys(presets) as PresetName[];

export function isPresetName(name: string): name is PresetName {
  return Object.hasOwn(presets, name);
}
