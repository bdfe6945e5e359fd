// The pipeline spec: one validated description of a whole run. zod schemas; types come from z.infer.
// Secrets are never values here: only the names of env vars or files that hold them.
import { z } from 'zod';

const envVarName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name (letters, digits, _), not a value');

/** Durations as Temporal accepts them: '30s', '10m', '2h', '7d', '500ms'. */
export const duration = z
  .string()
  .regex(/^\d+(\.\d+)?(ms|s|m|h|d)$/, "must be a duration like '30s', '10m', '2h' or '7d'");

const nonEmpty = z.string().min(1, 'must not be empty');
const positiveInt = z.number().int().positive();
const nonNegativeInt = z.number().int().nonnegative();

// ---------------------------------------------------------------------------------------------------------------
// Cluster

export const nodeSchema = z
  .object({
    host: nonEmpty.describe('address the executor reaches the node at (IP or host name)'),
    name: nonEmpty.optional().describe('stable node id; defaults to host'),
    gpus: nonNegativeInt.default(8),
    port: z.number().int().min(1).max(65535).optional().describe('ssh port for this node'),
    ip: nonEmpty.optional().describe('address other nodes use (Ray node ip, MASTER_ADDR); defaults to host'),
  })
  .strict();

export const executorSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('local') }).strict(),
  z
    .object({
      kind: z.literal('ssh'),
      user: nonEmpty.default('root'),
      port: z.number().int().min(1).max(65535).default(22),
      identityFile: nonEmpty.optional().describe('path of the private key file (never the key itself)'),
      knownHostsFile: nonEmpty.optional(),
      strictHostKeyChecking: z.boolean().default(true),
      connectTimeoutSec: positiveInt.default(10),
    })
    .strict(),
]);

export const clusterSchema = z
  .object({
    nodes: z.array(nodeSchema).default([]),
    spares: z.array(nodeSchema).default([]),
    hostfile: nonEmpty
      .optional()
      .describe('MPI hostfile (lines "ip slot=8") read at load time into nodes; resolved before validation'),
    gpusPerNode: positiveInt.default(8),
    executor: executorSchema.default({ kind: 'local' }),
    hostMemoryBytes: positiveInt.optional().describe('host memory per node, if known before the probe'),
    gpuMemoryGiB: z.number().positive().default(80),
    env: z
      .record(envVarName, z.string())
      .default({})
      .describe('plain environment of every command keel runs on the nodes (e.g. PATH); never secrets'),
    stateDir: nonEmpty
      .default('/var/lib/keel')
      .describe("per-node directory for process records; '{node}' is replaced by the node name"),
  })
  .strict();

// ---------------------------------------------------------------------------------------------------------------
// Storage, slime, model

export const storageSchema = z
  .object({
    baseDir: nonEmpty.describe('shared storage seen by every node ($BASE_DIR)'),
    freeBytes: positiveInt.optional().describe('free space at baseDir, if known before the probe'),
  })
  .strict();

export const slimeSchema = z
  .object({
    dir: nonEmpty.default('/root/slime'),
    megatronPath: nonEmpty.default('/root/Megatron-LM/'),
    python: nonEmpty.default('python3'),
  })
  .strict();

/** Facts about the model the planner needs (MODEL_ARGS themselves come from slime's model script). */
export const architectureSchema = z
  .object({
    numLayers: positiveInt,
    hiddenSize: positiveInt,
    ffnHiddenSize: positiveInt,
    numAttentionHeads: positiveInt,
    firstDenseLayers: nonNegativeInt.default(0),
    routedExperts: nonNegativeInt.default(0),
    sharedExperts: nonNegativeInt.default(0),
    expertsPerToken: nonNegativeInt.default(0),
    moeFfnHiddenSize: nonNegativeInt.default(0),
    vocabSize: positiveInt,
    mtpLayers: nonNegativeInt.default(0),
    parameters: z.number().positive().describe('parameters of the main model'),
  })
  .strict();

export const modelSchema = z
  .object({
    repo: nonEmpty.describe('Hugging Face repo id, e.g. deepseek-ai/DeepSeek-R1'),
    revision: nonEmpty.default('main'),
    hfEndpointEnv: envVarName.optional().describe('env var holding an alternative Hub endpoint URL'),
    hfTokenEnv: envVarName.optional().describe('env var holding the Hub token'),
    downloadDir: nonEmpty.describe(
      'download target (the FP8 release for R1); relative paths are under storage.baseDir',
    ),
    bf16Dir: nonEmpty.describe('cast output; the same as downloadDir for a model released in BF16'),
    torchDistDir: nonEmpty,
    saveDir: nonEmpty,
    modelScript: nonEmpty.describe('slime model script that defines MODEL_ARGS, relative to slime.dir'),
    architecture: architectureSchema,
    fp8Bytes: positiveInt.optional().describe('size of the FP8 release, for the storage check'),
    bf16Bytes: positiveInt.optional(),
  })
  .strict();

// ---------------------------------------------------------------------------------------------------------------
// The recipe's argument groups (slime / Megatron flags as typed fields)

export const ckptSchema = z
  .object({
    hfCheckpoint: nonEmpty.optional().describe('--hf-checkpoint; default model.downloadDir (R1: the FP8 release)'),
    refLoad: nonEmpty.optional().describe('--ref-load; default model.torchDistDir'),
    load: nonEmpty.optional().describe('--load; default model.saveDir'),
    save: nonEmpty.optional().describe('--save; default model.saveDir'),
    saveInterval: positiveInt,
  })
  .strict();

export const perfSchema = z
  .object({
    tensorModelParallelSize: positiveInt.default(1),
    sequenceParallel: z.boolean().default(false),
    pipelineModelParallelSize: positiveInt.default(1),
    contextParallelSize: positiveInt.default(1),
    expertModelParallelSize: positiveInt.default(1),
    expertTensorParallelSize: positiveInt.default(1),
    decoderFirstPipelineNumLayers: positiveInt.optional(),
    decoderLastPipelineNumLayers: positiveInt.optional(),
    recomputeGranularity: z.enum(['full', 'selective']).optional(),
    recomputeMethod: z.enum(['uniform', 'block']).optional(),
    recomputeNumLayers: positiveInt.optional(),
    useDynamicBatchSize: z.boolean().default(false),
    maxTokensPerGpu: positiveInt.optional(),
    microBatchSize: positiveInt.optional(),
  })
  .strict();

export const grpoSchema = z
  .object({
    advantageEstimator: z.enum(['grpo', 'gspo', 'reinforce_plus_plus', 'reinforce_plus_plus_baseline', 'ppo']),
    useKlLoss: z.boolean().default(false),
    klLossCoef: z.number().nonnegative().optional(),
    klLossType: z.enum(['kl', 'k2', 'k3', 'low_var_kl']).optional(),
    entropyCoef: z.number().nonnegative().optional(),
    epsClip: z.number().positive(),
    epsClipHigh: z.number().positive().optional(),
  })
  .strict();

export const optimizerSchema = z
  .object({
    optimizer: z.enum(['adam', 'sgd']).default('adam'),
    lr: z.number().positive(),
    lrDecayStyle: z.enum(['constant', 'linear', 'cosine']).optional(),
    weightDecay: z.number().nonnegative().optional(),
    adamBeta1: z.number().gt(0).lt(1).optional(),
    adamBeta2: z.number().gt(0).lt(1).optional(),
    optimizerCpuOffload: z.boolean().default(false),
    overlapCpuOptimizerD2hH2d: z.boolean().default(false),
    usePrecisionAwareOptimizer: z.boolean().default(false),
  })
  .strict();

export const sglangSchema = z
  .object({
    rolloutNumGpusPerEngine: positiveInt,
    sglangMemFractionStatic: z.number().gt(0).lte(1).optional(),
    sglangEpSize: positiveInt.optional(),
    sglangEnableDpAttention: z.boolean().default(false),
    sglangDpSize: positiveInt.optional(),
    sglangMoeDenseTpSize: positiveInt.optional(),
    sglangEnableDpLmHead: z.boolean().default(false),
    sglangMoeA2aBackend: z.enum(['none', 'deepep']).optional(),
    sglangDeepepMode: z.enum(['auto', 'normal', 'low_latency']).optional(),
    sglangServerConcurrency: positiveInt.optional(),
  })
  .strict();

export const miscSchema = z
  .object({
    attentionDropout: z.number().min(0).max(1).optional(),
    hiddenDropout: z.number().min(0).max(1).optional(),
    accumulateAllreduceGradsInFp32: z.boolean().default(false),
    attentionSoftmaxInFp32: z.boolean().default(false),
    attentionBackend: z.enum(['flash', 'fused', 'unfused', 'local', 'auto']).optional(),
    moeEnableDeepep: z.boolean().default(false),
    moeTokenDispatcherType: z.enum(['allgather', 'alltoall', 'flex']).optional(),
  })
  .strict();

export const rolloutSchema = z
  .object({
    promptData: nonEmpty,
    inputKey: nonEmpty.default('prompt'),
    labelKey: nonEmpty.optional(),
    applyChatTemplate: z.boolean().default(false),
    rolloutShuffle: z.boolean().default(false),
    rmType: nonEmpty.optional(),
    numRollout: positiveInt,
    rolloutBatchSize: positiveInt,
    nSamplesPerPrompt: positiveInt,
    rolloutMaxResponseLen: positiveInt,
    rolloutTemperature: z.number().nonnegative().optional(),
    globalBatchSize: positiveInt,
    numStepsPerRollout: positiveInt.optional(),
    balanceData: z.boolean().default(false),
    overSamplingBatchSize: positiveInt.optional(),
    dynamicSamplingFilterPath: nonEmpty.optional(),
    promptMaxTokens: positiveInt.default(2048).describe('planner hint: longest prompt in tokens (not a slime flag)'),
  })
  .strict();

export const evalSchema = z
  .object({
    evalInterval: positiveInt,
    evalPromptData: z.array(z.object({ name: nonEmpty, path: nonEmpty }).strict()).min(1),
    nSamplesPerEvalPrompt: positiveInt.optional(),
    evalMaxResponseLen: positiveInt.optional(),
    evalTopP: z.number().gt(0).lte(1).optional(),
  })
  .strict();

export const distributedSchema = z
  .object({
    actorNumNodes: positiveInt,
    actorNumGpusPerNode: positiveInt,
    colocate: z.boolean().default(false),
    rolloutNumGpus: positiveInt.optional().describe('GPUs for rollout when not colocated'),
  })
  .strict();

export const conversionSchema = z
  .object({
    nodes: positiveInt.describe('nodes in the torchrun gang'),
    nprocPerNode: positiveInt,
    masterPort: z.number().int().min(1).max(65535).default(12345),
    tensorModelParallelSize: positiveInt.default(1),
    pipelineModelParallelSize: positiveInt.default(1),
    expertTensorParallelSize: positiveInt.default(1),
    expertModelParallelSize: positiveInt.default(1),
    decoderFirstPipelineNumLayers: positiveInt.optional(),
    decoderLastPipelineNumLayers: positiveInt.optional(),
  })
  .strict();

export const rayHeadSchema = z
  .object({
    port: z.number().int().min(1).max(65535).default(6379),
    dashboardHost: nonEmpty
      .optional()
      .describe("address the dashboard (and its unauthenticated Jobs API) binds; default: the head node's own address"),
    dashboardPort: z.number().int().min(1).max(65535).default(8265),
    jobEnv: z.record(z.string(), z.string()).default({}).describe('runtime env vars of the training job'),
    isolateNodes: z
      .object({ portBase: z.number().int().min(1024).max(60000) })
      .strict()
      .optional()
      .describe('several Ray nodes on one host (the local cluster): own temp dir and ports per node'),
    stopStaleRay: z
      .boolean()
      .default(true)
      .describe("run 'ray stop --force' on a node before starting Ray there (one node per host only)"),
  })
  .strict();

// ---------------------------------------------------------------------------------------------------------------
// Steps (a DAG) and policies

const stepBase = {
  needs: z.array(nonEmpty).default([]),
};

export const stepSchema = z.discriminatedUnion('kind', [
  z
    .object({
      kind: z.literal('probe'),
      ...stepBase,
      inputs: z
        .boolean()
        .default(false)
        .describe('also check that every input path training reads is on every node and the same there'),
    })
    .strict(),
  z
    .object({
      kind: z.literal('hf-download'),
      ...stepBase,
      verifySha256: z.boolean().default(false),
      repoType: z.enum(['model', 'dataset']).default('model').describe("'dataset': hf download --repo-type dataset"),
      repo: nonEmpty.optional().describe('Hub repo id; default model.repo (required for a dataset)'),
      revision: nonEmpty.optional().describe('default main (model.revision for the model)'),
      localDir: nonEmpty
        .optional()
        .describe(
          'download target, relative paths under storage.baseDir; default model.downloadDir (required for a dataset)',
        ),
      files: z.array(nonEmpty).optional().describe('only these files of the repo (default: all)'),
    })
    .strict(),
  z
    .object({
      kind: z.literal('fp8-cast'),
      ...stepBase,
      engine: z.enum(['slime', 'native']).default('slime'),
      likeSlime: z
        .boolean()
        .default(false)
        .describe(
          "native engine: output identical, file for file, to slime's tool (default: keel's layout, format metadata, no quantization_config)",
        ),
      threads: positiveInt.optional(),
      directIo: z
        .boolean()
        .default(true)
        .describe('native engine: write the output with O_DIRECT (false: through the page cache only)'),
    })
    .strict(),
  z.object({ kind: z.literal('torch-dist-convert'), ...stepBase }).strict(),
  z.object({ kind: z.literal('ray-cluster'), ...stepBase }).strict(),
  z.object({ kind: z.literal('train'), ...stepBase }).strict(),
  z
    .object({
      kind: z.literal('command'),
      ...stepBase,
      node: nonEmpty.optional().describe('node name; defaults to the first node'),
      argv: z.array(z.string()).min(1),
      cwd: nonEmpty.optional(),
      env: z.record(envVarName, z.string()).default({}),
      creates: nonEmpty.optional().describe('file whose presence means the step is complete'),
    })
    .strict(),
  z
    .object({
      kind: z.literal('gang'),
      ...stepBase,
      nodes: positiveInt.describe('first N nodes of the cluster'),
      argv: z.array(z.string()).min(1),
      cwd: nonEmpty.optional(),
      env: z.record(envVarName, z.string()).default({}),
      masterPort: z.number().int().min(1).max(65535).default(29500),
      creates: nonEmpty.optional(),
    })
    .strict(),
]);

export const retentionSchema = z
  .object({
    keepLast: positiveInt.optional().describe('keep the last K checkpoints (unset: keep all)'),
    keepEvery: positiveInt.optional().describe('also keep every M-th checkpoint iteration'),
    keepBest: nonNegativeInt.default(1).describe('also keep the best N by eval score'),
  })
  .strict();

export const policiesSchema = z
  .object({
    maxAttempts: positiveInt.default(5),
    initialRetryInterval: duration.default('10s'),
    heartbeatTimeout: duration.default('2m'),
    hang: z
      .object({
        startup: duration.default('30m').describe('submission to first rollout'),
        rollout: duration.default('30m').describe('between rollouts'),
        checkpointSave: duration.default('60m').describe('saving... to saved'),
      })
      .strict()
      .default({ startup: '30m', rollout: '30m', checkpointSave: '60m' }),
    crashLoop: z
      .object({ maxRestarts: positiveInt.default(3), window: duration.default('1h') })
      .strict()
      .default({ maxRestarts: 3, window: '1h' }),
    retention: retentionSchema.default({ keepBest: 1 }),
    nodeWaitMax: duration.default('5m').describe('the longest pause between two probes while waiting for nodes'),
  })
  .strict();

export const temporalSchema = z
  .object({
    address: nonEmpty.default('127.0.0.1:7233'),
    namespace: nonEmpty.default('default'),
    taskQueue: nonEmpty.default('keel'),
    tls: z
      .object({
        certFile: nonEmpty.optional(),
        keyFile: nonEmpty.optional(),
        caFile: nonEmpty.optional(),
        serverName: nonEmpty.optional(),
      })
      .strict()
      .optional(),
    apiKeyEnv: envVarName.optional().describe('env var holding a Temporal Cloud API key'),
  })
  .strict();

export const recipeClaimsSchema = z
  .object({
    stageLayers: z.array(positiveInt).optional().describe("what the recipe's prose says the stages hold"),
    source: z.string().optional(),
  })
  .strict();

export const specSchema = z
  .object({
    name: z
      .string()
      .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'must be lowercase letters, digits and dashes (it names the workflow id)'),
    preset: nonEmpty.optional().describe('the preset this spec was built from, if any'),
    cluster: clusterSchema,
    storage: storageSchema,
    slime: slimeSchema.default({ dir: '/root/slime', megatronPath: '/root/Megatron-LM/', python: 'python3' }),
    model: modelSchema,
    conversion: conversionSchema,
    rayHead: rayHeadSchema.default({
      port: 6379,
      dashboardPort: 8265,
      jobEnv: {},
      stopStaleRay: true,
    }),
    distributed: distributedSchema,
    ckpt: ckptSchema,
    perf: perfSchema,
    grpo: grpoSchema,
    optimizer: optimizerSchema,
    sglang: sglangSchema,
    misc: miscSchema.default({
      accumulateAllreduceGradsInFp32: false,
      attentionSoftmaxInFp32: false,
      moeEnableDeepep: false,
    }),
    rollout: rolloutSchema,
    eval: evalSchema,
    extraArgs: z.array(z.string()).default([]).describe('extra train.py flags passed through unchanged'),
    steps: z.record(z.string().regex(/^[a-z][a-z0-9-]*$/, 'step ids are lowercase words and dashes'), stepSchema),
    policies: policiesSchema.default({
      maxAttempts: 5,
      initialRetryInterval: '10s',
      heartbeatTimeout: '2m',
      hang: { startup: '30m', rollout: '30m', checkpointSave: '60m' },
      crashLoop: { maxRestarts: 3, window: '1h' },
      retention: { keepBest: 1 },
      nodeWaitMax: '5m',
    }),
    temporal: temporalSchema.default({ address: '127.0.0.1:7233', namespace: 'default', taskQueue: 'keel' }),
    recipeClaims: recipeClaimsSchema.optional(),
  })
  .strict();

export type Spec = z.infer<typeof specSchema>;
export type SpecInput = z.input<typeof specSchema>;
export type NodeSpec = z.infer<typeof nodeSchema>;
export type StepSpec = z.infer<typeof stepSchema>;
export type StepKind = StepSpec['kind'];
export type ExecutorSpec = z.infer<typeof executorSchema>;
