// The pipeline spec: one validated description of a whole run. zod schemas; types come from z.infer.
// Secrets are never values here: only the names of env vars or files that hold them.
import { z } from 'zod';
import { durationMs } from './duration.js';
import { durationMaxLength, initialRetryIntervalMax, retryMaximumInterval } from './retry-bounds.js';
import { forbiddenAddressProblem, hostProblem, isPrototypeKey, relativePathProblem } from './names.js';
import { secretEnvName, urlVariableName, variableName, variableNameMatching } from './env-names.js';

const envVarName = variableName;

const durationPattern = /^\d+(\.\d+)?(ms|s|m|h|d)$/;

/**
 * Durations as Temporal accepts them ('30s', '10m', '2h', '7d', '500ms'), between `min` and `max` inclusive.
 * `belowMin` follows "must be at least <min>" when a value is too small.
 */
export function duration(min: string, max: string, belowMin = '(0 does not turn it off)', aboveMax = '') {
  return z
    .string()
    .max(durationMaxLength, `must be a duration of at most ${durationMaxLength} characters, like '30s' or '10m'`)
    .regex(durationPattern, "must be a duration like '30s', '10m', '2h' or '7d'")
    .refine((text) => !durationPattern.test(text) || durationMs(text) >= durationMs(min), {
      message: `must be at least ${min} ${belowMin}`,
    })
    .refine((text) => !durationPattern.test(text) || durationMs(text) <= durationMs(max), {
      message: `must be at most ${max}${aboveMax ? ` ${aboveMax}` : ''}`,
    });
}

const nonEmpty = z.string().min(1, 'must not be empty');
/** The longest keyword keel puts in a search attribute (src/search-attributes.ts). */
const searchKeywordMax = 100;
/** Counts: a billion is more than any run needs, and keeps the planner's products of counts finite and integral. */
const maxCount = 1_000_000_000;
const positiveInt = z.number().int().positive().max(maxCount);
const nonNegativeInt = z.number().int().nonnegative().max(maxCount);
/** Sizes in bytes: exact integers up to 2^53. */
const byteCount = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);
/** Parallel sizes (TP, PP, CP, EP, ETP): the planner lays out one entry per pipeline stage. */
const parallelSize = z.number().int().positive().max(65_536);
const hostName = nonEmpty
  .refine((host) => hostProblem(host) === undefined, {
    message: 'must be a host name or an IP address (letters, digits, dots, dashes; IPv6 with colons)',
  })
  .superRefine((host, ctx) => {
    const problem = forbiddenAddressProblem(host);
    if (problem) ctx.addIssue({ code: 'custom', message: `${problem}; name the node's own address` });
  });
/** An address to bind or reach a service at: a host, or the unspecified address (all interfaces). */
const bindHost = nonEmpty
  .refine((host) => hostProblem(host) === undefined || host === '::', {
    message: 'must be a host name or an IP address (no scheme, port or path), e.g. 10.0.0.1 or 0.0.0.0',
  })
  .superRefine((host, ctx) => {
    const problem = forbiddenAddressProblem(host, { allowUnspecified: true });
    if (problem) ctx.addIssue({ code: 'custom', message: `${problem}; name the head node's own address` });
  });
/** A list bounded so that nothing keel does per element can run away. */
const list = <T extends z.ZodType>(item: T, max: number) => z.array(item).max(max, `at most ${max} entries`);

// ---------------------------------------------------------------------------------------------------------------
// Cluster

export const nodeSchema = z
  .object({
    host: hostName.describe('address the executor reaches the node at (IP or host name)'),
    name: nonEmpty.optional().describe('stable node id; defaults to host'),
    gpus: z.number().int().nonnegative().max(1024).default(8),
    port: z.number().int().min(1).max(65535).optional().describe('ssh port for this node'),
    ip: hostName.optional().describe('address other nodes use (Ray node ip, MASTER_ADDR); defaults to host'),
  })
  .strict();

/** A Slurm name (partition, account, QOS, feature expression, gres): no spaces, no shell characters. */
const slurmWord = z
  .string()
  .regex(/^[A-Za-z0-9_.,:+=@|&*()[\]-]+$/, 'must be a Slurm name (letters, digits and _ . , : + = @ | & * ( ) [ ] -)');

/** sbatch options keel sets itself: an extra argument may not set them again. */
export const slurmReservedOptions = [
  '--job-name',
  '-J',
  '--nodes',
  '-N',
  '--ntasks-per-node',
  '--parsable',
  '--wrap',
  '--output',
  '-o',
  '--error',
  '-e',
  '--partition',
  '-p',
  '--account',
  '-A',
  '--qos',
  '-q',
  '--time',
  '-t',
  '--gres',
  '--constraint',
  '-C',
  '--exclusive',
  '--exclude',
  '-x',
  '--signal',
  '--requeue',
  '--no-requeue',
] as const;

export const slurmExecutorSchema = z
  .object({
    kind: z.literal('slurm'),
    partition: slurmWord
      .optional()
      .describe("the partition of the allocation (sbatch --partition); Slurm's default when absent"),
    account: slurmWord.optional().describe('sbatch --account'),
    qos: slurmWord.optional().describe('sbatch --qos'),
    timeLimit: duration('1m', '3650d')
      .optional()
      .describe(
        "time limit of one allocation (sbatch --time, whole minutes); a longer run continues in a new allocation after a checkpoint (see stopBeforeEnd). The partition's limit when absent",
      ),
    gres: slurmWord
      .optional()
      .describe('generic resources per node (sbatch --gres); default gpu:<cluster.gpusPerNode>'),
    constraint: slurmWord.optional().describe('node features (sbatch --constraint)'),
    exclusive: z.boolean().default(true).describe('whole nodes only (sbatch --exclusive)'),
    extraArgs: list(
      z
        .string()
        .regex(/^--?[A-Za-z]/, 'must be an sbatch option starting with - or --, e.g. --reservation=r1')
        .refine((arg) => !slurmReservedOptions.some((o) => arg === o || arg.startsWith(`${o}=`)), {
          message: `keel sets this option itself: use the executor's fields (partition, account, qos, timeLimit, gres, constraint, exclusive) instead`,
        }),
      64,
    )
      .default([])
      .describe('more sbatch options, each one word (e.g. --reservation=r1, --mem=0)'),
    slurmConf: nonEmpty.optional().describe("the slurm.conf Slurm's commands read on the worker host (SLURM_CONF)"),
    releaseGrace: duration('1s', '10m').default('30s').describe('between scancel --signal=TERM and the final scancel'),
    stopBeforeEnd: duration('1s', '7d')
      .default('10m')
      .describe(
        "training stops after the last checkpoint that leaves this much of the allocation's time limit (for stopping the job and releasing it), then the run continues in a new allocation",
      ),
    notifyPendingAfter: duration('1s', '30d')
      .default('1h')
      .describe("a run still waiting this long for its allocation is announced to the webhooks, with Slurm's reason"),
    jobId: z
      .string()
      .regex(/^\d+$/, 'must be a Slurm job id (digits)')
      .optional()
      .describe('run inside this allocation (keel fills it in from the job named after the run; set it to adopt one)'),
  })
  .strict();

export const executorSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('local') }).strict(),
  z
    .object({
      kind: z.literal('ssh'),
      user: z
        .string()
        .regex(/^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/, 'must be a user name (letters, digits, _ . -; not starting with -)')
        .default('root'),
      port: z.number().int().min(1).max(65535).default(22),
      identityFile: nonEmpty.optional().describe('path of the private key file (never the key itself)'),
      knownHostsFile: nonEmpty.optional(),
      strictHostKeyChecking: z.boolean().default(true),
      connectTimeoutSec: positiveInt.default(10),
    })
    .strict(),
  slurmExecutorSchema,
]);

export const clusterSchema = z
  .object({
    nodes: list(nodeSchema, 10_000).default([]),
    spares: list(nodeSchema, 10_000).default([]),
    hostfile: nonEmpty
      .optional()
      .describe('MPI hostfile (lines "ip slot=8") read at load time into nodes; resolved before validation'),
    gpusPerNode: z.number().int().positive().max(1024).default(8),
    executor: executorSchema.default({ kind: 'local' }),
    hostMemoryBytes: byteCount.optional().describe('host memory per node, if known before the probe'),
    gpuMemoryGiB: z.number().positive().max(1_000_000).default(80),
    env: z
      .record(envVarName, z.string())
      .default({})
      .describe('plain environment of every command keel runs on the nodes (e.g. PATH); never secrets'),
    stateDir: nonEmpty
      .default('/var/lib/keel')
      .describe("per-node directory for process records; '{node}' is replaced by the node name"),
    maxConcurrentCommands: z
      .number()
      .int()
      .min(1)
      .max(4096)
      .default(64)
      .describe(
        'commands keel runs on the nodes at once, over all nodes: each is an ssh client process on the worker host',
      ),
  })
  .strict();

// ---------------------------------------------------------------------------------------------------------------
// Storage, slime, model

export const storageSchema = z
  .object({
    baseDir: nonEmpty.describe('shared storage seen by every node ($BASE_DIR)'),
    freeBytes: byteCount.optional().describe('free space at baseDir, if known before the probe'),
  })
  .strict();

export const slimeSchema = z
  .object({
    dir: nonEmpty.default('/root/slime'),
    megatronPath: nonEmpty.default('/root/Megatron-LM/'),
    python: nonEmpty.default('python3'),
    imports: z
      .array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/, 'must be a Python module name'))
      .max(50)
      .default([])
      .describe(
        "Python modules the probe imports on every node before training, in slime.dir with the job's environment " +
          '(e.g. sglang, deep_ep, megatron, slime): a missing one names the node and the error',
      ),
  })
  .strict();

/** Facts about the model the planner needs (MODEL_ARGS themselves come from slime's model script). */
export const architectureSchema = z
  .object({
    numLayers: positiveInt.max(100_000),
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
    parameters: z.number().positive().max(1e15).describe('parameters of the main model'),
  })
  .strict();

export const modelSchema = z
  .object({
    repo: nonEmpty.describe('Hugging Face repo id, e.g. deepseek-ai/DeepSeek-R1'),
    revision: nonEmpty.default('main'),
    hfEndpointEnv: variableNameMatching(/(ENDPOINT|URL)$/, 'end in ENDPOINT or URL (e.g. HF_ENDPOINT)')
      .optional()
      .describe('env var holding an alternative Hub endpoint URL'),
    hfTokenEnv: variableNameMatching(/TOKEN/, 'contain TOKEN (e.g. HF_TOKEN)')
      .optional()
      .describe('env var holding the Hub token'),
    downloadDir: nonEmpty.describe(
      'download target (the FP8 release for R1); relative paths are under storage.baseDir',
    ),
    bf16Dir: nonEmpty.describe('cast output; the same as downloadDir for a model released in BF16'),
    torchDistDir: nonEmpty,
    saveDir: nonEmpty,
    modelScript: nonEmpty.describe('slime model script that defines MODEL_ARGS, relative to slime.dir'),
    architecture: architectureSchema,
    fp8Bytes: byteCount.optional().describe('size of the FP8 release, for the storage check'),
    bf16Bytes: byteCount.optional(),
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
    tensorModelParallelSize: parallelSize.default(1),
    sequenceParallel: z.boolean().default(false),
    pipelineModelParallelSize: parallelSize.default(1),
    contextParallelSize: parallelSize.default(1),
    expertModelParallelSize: parallelSize.default(1),
    expertTensorParallelSize: parallelSize.default(1),
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
    klLossType: z.enum(['k1', 'k2', 'k3', 'low_var_kl']).optional(),
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
    lrWarmupIters: nonNegativeInt.optional(),
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
    numRollout: positiveInt.max(1_000_000, 'must be at most 1000000 (the R1 recipe runs 3000)'),
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
    evalPromptData: list(z.object({ name: nonEmpty, path: nonEmpty }).strict(), 1000).min(1),
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
    nodes: positiveInt.max(10_000).describe('nodes in the torchrun gang'),
    nprocPerNode: positiveInt.max(1024),
    masterPort: z.number().int().min(1).max(65535).default(12345),
    tensorModelParallelSize: parallelSize.default(1),
    pipelineModelParallelSize: parallelSize.default(1),
    expertTensorParallelSize: parallelSize.default(1),
    expertModelParallelSize: parallelSize.default(1),
    decoderFirstPipelineNumLayers: positiveInt.optional(),
    decoderLastPipelineNumLayers: positiveInt.optional(),
  })
  .strict();

export const rayHeadSchema = z
  .object({
    port: z.number().int().min(1).max(65535).default(6379),
    dashboardHost: bindHost
      .optional()
      .describe("address the dashboard (and its unauthenticated Jobs API) binds; default: the head node's own address"),
    dashboardPort: z.number().int().min(1).max(65535).default(8265),
    jobEnv: z
      .record(envVarName, z.string())
      .default({})
      .describe("plain env vars of the training job (Ray's runtime_env, served by the dashboard): never secrets"),
    secretEnv: list(secretEnvName, 100)
      .default([])
      .describe(
        "names of worker env vars (e.g. WANDB_API_KEY) given to the training job's entrypoint under the same name, " +
          'through a 0600 file on the head node (never in runtime_env, history or argv)',
      ),
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
  needs: list(nonEmpty, 1000).default([]),
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
      files: list(
        nonEmpty.superRefine((file, ctx) => {
          const problem = relativePathProblem(file);
          if (problem) ctx.addIssue({ code: 'custom', message: `a file of the repo: ${problem}` });
        }),
        100_000,
      )
        .optional()
        .describe('only these files of the repo (default: all)'),
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
      argv: list(z.string(), 10_000).min(1),
      cwd: nonEmpty.optional(),
      env: z.record(envVarName, z.string()).default({}),
      creates: nonEmpty.optional().describe('file whose presence means the step is complete'),
    })
    .strict(),
  z
    .object({
      kind: z.literal('gang'),
      ...stepBase,
      nodes: positiveInt.max(10_000).describe('first N nodes of the cluster'),
      argv: list(z.string(), 10_000).min(1),
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
    maxAttempts: positiveInt.max(1000).default(5),
    initialRetryInterval: duration(
      '100ms',
      initialRetryIntervalMax,
      undefined,
      `(Temporal's retries back off from it to at most ${retryMaximumInterval.notification} for notifications and ` +
        `${retryMaximumInterval.reattaching} for the rest, and refuse a first interval longer than that; set a shorter one)`,
    ).default('10s'),
    heartbeatTimeout: duration('1s', '1d').default('2m'),
    hang: z
      .object({
        startup: duration('1s', '30d')
          .default('30m')
          .describe('submission to the first rollout: loading the weights, the eval before rollout 0, rollout 0'),
        rollout: duration('1s', '30d')
          .default('30m')
          .describe('between two lines of work of a rollout (generation, a train step, its perf line)'),
        eval: duration('1s', '30d')
          .optional()
          .describe('after a rollout whose eval is due, until the eval line (default: policies.hang.rollout)'),
        checkpointSave: duration('1s', '30d').default('60m').describe('saving... to saved'),
      })
      .strict()
      .default({ startup: '30m', rollout: '30m', checkpointSave: '60m' }),
    crashLoop: z
      .object({ maxRestarts: positiveInt.max(1000).default(3), window: duration('1s', '365d').default('1h') })
      .strict()
      .default({ maxRestarts: 3, window: '1h' }),
    retention: retentionSchema.default({ keepBest: 1 }),
    nodeWaitMax: duration('1s', '1d')
      .default('5m')
      .describe('the longest pause between two probes while waiting for nodes'),
  })
  .strict();

/**
 * Meta's Llama 3 report ("The Llama 3 Herd of Models", 2024, section 3.3.4): 419 unexpected interruptions in a
 * 54-day snapshot of pre-training on 16,384 H100 GPUs -- about 1.97e-5 per GPU-hour, every cause counted (GPUs, host
 * components, network, software). docs/reliability.md.
 */
export const llama3FailuresPerGpuHour = 419 / (54 * 24 * 16_384);

/** Planner inputs for the expected ETTR and the best save interval (docs/reliability.md); nothing else reads them. */
export const reliabilitySchema = z
  .object({
    failuresPerGpuHour: z
      .number()
      .positive('must be a positive rate of failures per GPU-hour (Llama 3 saw 1.97e-5)')
      .max(1, 'must be at most 1 failure per GPU-hour (Llama 3 saw 1.97e-5)')
      .default(llama3FailuresPerGpuHour)
      .describe("unexpected interruptions per GPU-hour; default: Llama 3's 419 in 54 days on 16,384 GPUs"),
    checkpointSaveTime: duration('100ms', '1d', '(a save always takes time)')
      .optional()
      .describe('wall time training stops for one checkpoint save'),
    restartTime: duration('1s', '7d', '(a restart always takes time)')
      .optional()
      .describe('from a failure to the first rollout of the resubmitted job: detection, heal, resubmit, start-up'),
    rolloutTime: duration('100ms', '7d', '(a rollout always takes time)')
      .optional()
      .describe('wall time of one rollout: generation, training step, weight update, evals spread over rollouts'),
    asyncSaveBlockingTime: duration('100ms', '1d', '(staging a save always takes time)')
      .optional()
      .describe("with Megatron's --async-save: the part of a save that stops training (staging to host memory)"),
    engineFailureShare: z
      .number()
      .min(0, 'must be a share of failures between 0 and 1')
      .max(1, 'must be a share of failures between 0 and 1')
      .optional()
      .describe("with slime's --use-fault-tolerance: the share of failures that are rollout-engine failures"),
  })
  .strict();

/**
 * Where the control worker and the CLI reach Temporal (src/client/connection.ts). Every field is optional: a flag or a
 * KEEL_TEMPORAL_* env var overrides it, and without either keel uses the local dev server (127.0.0.1:7233, namespace
 * default, task queue keel). `tls: {}` turns TLS on with the system's CA certificates.
 */
export const temporalSchema = z
  .object({
    address: nonEmpty.optional().describe('host:port of the frontend, e.g. my-ns.a1b2c.tmprl.cloud:7233'),
    namespace: nonEmpty.optional(),
    taskQueue: nonEmpty.optional(),
    tls: z
      .object({
        certFile: nonEmpty.optional().describe('client certificate (PEM) for mTLS; needs keyFile'),
        keyFile: nonEmpty.optional().describe('private key (PEM) of certFile'),
        caFile: nonEmpty.optional().describe("the server's CA (PEM); default: the system's CA certificates"),
        serverName: nonEmpty.optional().describe('TLS server name, when it differs from the host of address'),
      })
      .strict()
      .superRefine((tls, ctx) => {
        if (Boolean(tls.certFile) !== Boolean(tls.keyFile))
          ctx.addIssue({
            code: 'custom',
            path: [tls.certFile ? 'keyFile' : 'certFile'],
            message: 'a client certificate needs its key: give both certFile and keyFile (or neither)',
          });
      })
      .optional(),
    apiKeyEnv: variableNameMatching(/KEY|TOKEN/, 'contain KEY or TOKEN (e.g. TEMPORAL_API_KEY)')
      .optional()
      .describe('env var holding a Temporal Cloud API key (never the key itself)'),
  })
  .strict();

export type TemporalSection = z.infer<typeof temporalSchema>;

// ---------------------------------------------------------------------------------------------------------------
// Notifications (docs/notifications.md)

export const webhookSchema = z
  .object({
    urlEnv: urlVariableName(/HOOK/, 'contain HOOK (e.g. SLACK_WEBHOOK_URL)', 'urlEnv: SLACK_WEBHOOK_URL').describe(
      "env var on the control worker holding the webhook's URL (a secret: never a spec value)",
    ),
    format: z
      .enum(['slack', 'json'])
      .default('json')
      .describe("'slack': a Slack-compatible incoming-webhook body {\"text\": ...}; 'json': the event's fields"),
    checkpoints: z.boolean().default(false).describe('also send every checkpoint training saves'),
    evals: z.boolean().default(false).describe('also send every eval score training logs'),
  })
  .strict();

export const notifySchema = z
  .object({
    webhooks: list(webhookSchema, 10).min(1, 'needs at least one webhook (or leave notify out)'),
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
    preset: nonEmpty
      .max(searchKeywordMax, `at most ${searchKeywordMax} characters (it is shown as the KeelPreset search attribute)`)
      .optional()
      .describe('the preset this spec was built from, if any'),
    cluster: clusterSchema,
    storage: storageSchema,
    slime: slimeSchema.default({
      dir: '/root/slime',
      megatronPath: '/root/Megatron-LM/',
      python: 'python3',
      imports: [],
    }),
    model: modelSchema,
    conversion: conversionSchema,
    rayHead: rayHeadSchema.default({
      port: 6379,
      dashboardPort: 8265,
      jobEnv: {},
      secretEnv: [],
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
    extraArgs: list(z.string(), 10_000).default([]).describe('extra train.py flags passed through unchanged'),
    steps: z
      .record(
        z
          .string()
          .regex(/^[a-z][a-z0-9-]{0,62}$/, 'step ids are lowercase words and dashes (at most 63 characters)')
          .refine((id) => !isPrototypeKey(id), 'is a name every JavaScript object has: choose another step id'),
        stepSchema,
      )
      .refine((steps) => Object.keys(steps).length <= 1000, 'at most 1000 steps'),
    policies: policiesSchema.default({
      maxAttempts: 5,
      initialRetryInterval: '10s',
      heartbeatTimeout: '2m',
      hang: { startup: '30m', rollout: '30m', checkpointSave: '60m' },
      crashLoop: { maxRestarts: 3, window: '1h' },
      retention: { keepBest: 1 },
      nodeWaitMax: '5m',
    }),
    temporal: temporalSchema.optional(),
    notify: notifySchema
      .optional()
      .describe(
        'webhooks told when a run needs a person (paused, waiting for nodes, a node quarantined) and how it ends',
      ),
    recipeClaims: recipeClaimsSchema.optional(),
    reliability: reliabilitySchema
      .optional()
      .describe('failure rate and save, restart and rollout times for the ETTR estimate of keel plan'),
  })
  .strict();

export type Spec = z.infer<typeof specSchema>;
export type SpecInput = z.input<typeof specSchema>;
export type NodeSpec = z.infer<typeof nodeSchema>;
export type StepSpec = z.infer<typeof stepSchema>;
export type StepKind = StepSpec['kind'];
export type ExecutorSpec = z.infer<typeof executorSchema>;
export type SlurmExecutorSpec = z.infer<typeof slurmExecutorSchema>;
export type ReliabilitySpec = z.infer<typeof reliabilitySchema>;
export type WebhookSpec = z.infer<typeof webhookSchema>;
