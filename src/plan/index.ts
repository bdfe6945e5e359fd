// Preflight: everything that can be known about a run from its spec alone, in milliseconds, before any node is
// touched. Pure; errors stop a run, warnings are kept in its state.
import type { Spec } from '../spec/schema.js';
import { modelPaths, stripTrailingSlash } from '../spec/paths.js';
import { hasErrors, type Finding } from './findings.js';
import { checkSecrets } from './secrets.js';
import { deriveLayout, type ParallelLayout } from './layout.js';
import { planExtraArgs } from './extra-args.js';
import { checkMicroBatch } from './batches.js';
import { checkDashboardExposure } from './ray-dashboard.js';
import { checkEngineMemory, type EngineMemory } from './engine-memory.js';
import { checkTrainFlags, describeCatalogue, type ArgCatalogue } from './flags.js';
import {
  checkpointSchedule,
  estimateMemory,
  estimateStorage,
  type MemoryEstimate,
  type StorageEstimate,
} from './resources.js';
import { checkHangTimeouts } from './hang.js';
import { estimateReliability, type ReliabilityEstimate } from './reliability.js';

export type { Finding, Severity } from './findings.js';
export { hasErrors } from './findings.js';
export { fmtBytes, checkpointSchedule } from './resources.js';
export type { ReliabilityEstimate } from './reliability.js';

export interface Plan {
  name: string;
  preset?: string;
  layout: ParallelLayout;
  conversion: ParallelLayout & { nodes: number; nprocPerNode: number };
  rollout: {
    gpus: number;
    gpusPerEngine: number;
    engines: number;
    nodesPerEngine: number;
    sglangDpSize: number;
    concurrencyPerDpRank?: number;
  };
  batch: {
    samplesPerRollout: number;
    globalBatch: number;
    stepsPerRollout: number;
    overSamplingBatch?: number;
    samplesPerDpRank: number;
  };
  tokens: { perSampleMax: number; budgetPerCpGroup?: number };
  memory: MemoryEstimate;
  engineMemory: EngineMemory;
  storage: StorageEstimate;
  schedule: { checkpoints: number; firstCheckpoint?: number; lastCheckpoint?: number; evals: number };
  /** expected ETTR and the save interval that maximises it (docs/reliability.md) */
  reliability: ReliabilityEstimate;
  /** the argument catalogue the train.py flags were checked against, if any */
  flagsCheckedAgainst?: string;
  findings: Finding[];
  ok: boolean;
}

export interface PlanOptions {
  /** check every train.py flag against this catalogue of slime's (and Megatron's) parsers */
  catalogue?: ArgCatalogue;
}

export function plan(given: Spec, options: PlanOptions = {}): Plan {
  const findings: Finding[] = [];
  // Planned with the values slime will see: an extraArgs flag that duplicates a typed field is an error, and wins.
  const spec = planExtraArgs(given, findings);
  if (options.catalogue) findings.push(...checkTrainFlags(given, options.catalogue));
  checkCluster(spec, findings);
  checkDashboardExposure(spec, findings);
  checkSecrets(spec, findings);

  const arch = spec.model.architecture;
  const { perf, distributed } = spec;
  const worldSize = distributed.actorNumNodes * distributed.actorNumGpusPerNode;
  if (perf.sequenceParallel && perf.tensorModelParallelSize === 1) {
    findings.push({
      severity: 'error',
      path: 'perf.sequenceParallel',
      message: 'sequence parallel needs tensor parallel size > 1',
      fix: 'turn off perf.sequenceParallel or raise perf.tensorModelParallelSize',
    });
  }
  const layout = deriveLayout(
    {
      worldSize,
      tp: perf.tensorModelParallelSize,
      pp: perf.pipelineModelParallelSize,
      cp: perf.contextParallelSize,
      ep: perf.expertModelParallelSize,
      etp: perf.expertTensorParallelSize,
      numLayers: arch.numLayers,
      routedExperts: arch.routedExperts,
      first: perf.decoderFirstPipelineNumLayers,
      last: perf.decoderLastPipelineNumLayers,
    },
    {
      tp: 'perf.tensorModelParallelSize',
      pp: 'perf.pipelineModelParallelSize',
      ep: 'perf.expertModelParallelSize',
      etp: 'perf.expertTensorParallelSize',
      first: 'perf.decoderFirstPipelineNumLayers',
      last: 'perf.decoderLastPipelineNumLayers',
      world: 'distributed.actorNumNodes',
    },
    findings,
  );
  checkRecipeClaims(spec, layout, findings);

  const conv = spec.conversion;
  const conversionLayout = deriveLayout(
    {
      worldSize: conv.nodes * conv.nprocPerNode,
      tp: conv.tensorModelParallelSize,
      pp: conv.pipelineModelParallelSize,
      cp: 1,
      ep: conv.expertModelParallelSize,
      etp: conv.expertTensorParallelSize,
      numLayers: arch.numLayers,
      routedExperts: arch.routedExperts,
      first: conv.decoderFirstPipelineNumLayers,
      last: conv.decoderLastPipelineNumLayers,
    },
    {
      tp: 'conversion.tensorModelParallelSize',
      pp: 'conversion.pipelineModelParallelSize',
      ep: 'conversion.expertModelParallelSize',
      etp: 'conversion.expertTensorParallelSize',
      first: 'conversion.decoderFirstPipelineNumLayers',
      last: 'conversion.decoderLastPipelineNumLayers',
      world: 'conversion.nodes',
    },
    findings,
  );

  const rollout = planRollout(spec, worldSize, findings);
  const batch = planBatch(spec, layout, findings);
  checkMicroBatch(spec, layout, findings);
  const tokens = planTokens(spec, findings);
  checkGrpo(spec, findings);
  const schedule = planSchedule(spec, findings);
  const memory = estimateMemory(spec, layout, findings);
  const engineMemory = checkEngineMemory(spec, findings);
  const storage = estimateStorage(spec, findings);
  const reliability = estimateReliability(spec, findings);
  checkHangTimeouts(spec, findings);

  return {
    name: spec.name,
    preset: spec.preset,
    layout,
    conversion: { ...conversionLayout, nodes: conv.nodes, nprocPerNode: conv.nprocPerNode },
    rollout,
    batch,
    tokens,
    memory,
    engineMemory,
    storage,
    schedule,
    reliability,
    flagsCheckedAgainst: options.catalogue ? describeCatalogue(options.catalogue) : undefined,
    findings,
    ok: !hasErrors(findings),
  };
}

function checkCluster(spec: Spec, findings: Finding[]): void {
  const { cluster, distributed, conversion } = spec;
  if (cluster.nodes.length < distributed.actorNumNodes) {
    findings.push({
      severity: 'error',
      path: 'cluster.nodes',
      message: `training needs ${distributed.actorNumNodes} nodes (distributed.actorNumNodes) but the cluster lists ${cluster.nodes.length}`,
      fix: 'add nodes (cluster.nodes or cluster.hostfile) or lower distributed.actorNumNodes',
    });
  }
  cluster.nodes.forEach((node, i) => {
    if (node.gpus < distributed.actorNumGpusPerNode) {
      findings.push({
        severity: 'error',
        path: `cluster.nodes[${i}].gpus`,
        message: `node ${node.name ?? node.host} has ${node.gpus} GPUs; training places ${distributed.actorNumGpusPerNode} per node`,
        fix: 'fix the node entry or lower distributed.actorNumGpusPerNode',
      });
    }
  });
  if (conversion.nodes > cluster.nodes.length) {
    findings.push({
      severity: 'error',
      path: 'conversion.nodes',
      message: `the conversion gang needs ${conversion.nodes} nodes but the cluster lists ${cluster.nodes.length}`,
      fix: 'lower conversion.nodes or add nodes',
    });
  }
  if (conversion.nprocPerNode > cluster.gpusPerNode) {
    findings.push({
      severity: 'error',
      path: 'conversion.nprocPerNode',
      message: `${conversion.nprocPerNode} ranks per node, but nodes have ${cluster.gpusPerNode} GPUs`,
      fix: `set conversion.nprocPerNode <= ${cluster.gpusPerNode}`,
    });
  }
  if (distributed.actorNumGpusPerNode > cluster.gpusPerNode) {
    findings.push({
      severity: 'error',
      path: 'distributed.actorNumGpusPerNode',
      message: `${distributed.actorNumGpusPerNode} GPUs per node requested, nodes have ${cluster.gpusPerNode}`,
      fix: `set distributed.actorNumGpusPerNode <= ${cluster.gpusPerNode}`,
    });
  }
  if (cluster.spares.length === 0 && cluster.nodes.length === distributed.actorNumNodes && cluster.nodes.length > 1) {
    findings.push({
      severity: 'info',
      path: 'cluster.spares',
      message: 'no spare nodes: a lost node pauses training (waiting-for-nodes) until it returns or one is added',
    });
  }
}

function checkRecipeClaims(spec: Spec, layout: ParallelLayout, findings: Finding[]): void {
  const claimed = spec.recipeClaims?.stageLayers;
  if (!claimed || layout.stageLayers.length === 0) return;
  const sum = claimed.reduce((a, b) => a + b, 0);
  const same = claimed.length === layout.stageLayers.length && claimed.every((v, i) => v === layout.stageLayers[i]);
  if (same) return;
  findings.push({
    severity: 'warning',
    path: 'recipeClaims.stageLayers',
    message:
      `the recipe's text says the stages hold ${claimed.join(', ')} layers (${sum} in all), but the model has ` +
      `${spec.model.architecture.numLayers}; the flags give ${layout.stageLayers.join(', ')}` +
      (spec.recipeClaims?.source ? ` (${spec.recipeClaims.source})` : ''),
    fix: 'keel follows the flags; nothing to change unless the split was meant differently',
  });
}

function planRollout(spec: Spec, worldSize: number, findings: Finding[]): Plan['rollout'] {
  const s = spec.sglang;
  const arch = spec.model.architecture;
  let gpus = worldSize;
  if (!spec.distributed.colocate) {
    if (spec.distributed.rolloutNumGpus === undefined) {
      findings.push({
        severity: 'error',
        path: 'distributed.rolloutNumGpus',
        message: 'without colocate, rollout needs GPUs of its own and none are given',
        fix: 'set distributed.rolloutNumGpus or distributed.colocate: true',
      });
    } else {
      gpus = spec.distributed.rolloutNumGpus;
      const total = spec.cluster.nodes.reduce((a, n) => a + n.gpus, 0);
      if (gpus + worldSize > total) {
        findings.push({
          severity: 'error',
          path: 'distributed.rolloutNumGpus',
          message: `training (${worldSize}) plus rollout (${gpus}) GPUs exceed the cluster's ${total}`,
          fix: 'colocate, or lower the GPU counts',
        });
      }
    }
  }
  const perEngine = s.rolloutNumGpusPerEngine;
  let engines = 0;
  if (gpus % perEngine !== 0) {
    findings.push({
      severity: 'error',
      path: 'sglang.rolloutNumGpusPerEngine',
      message: `${perEngine} GPUs per engine do not divide the ${gpus} rollout GPUs`,
      fix: `choose a divisor of ${gpus}`,
    });
  } else engines = gpus / perEngine;
  if (s.sglangEpSize !== undefined) {
    if (perEngine % s.sglangEpSize !== 0) {
      findings.push({
        severity: 'error',
        path: 'sglang.sglangEpSize',
        message: `SGLang EP ${s.sglangEpSize} does not divide the engine's ${perEngine} GPUs`,
        fix: `set sglang.sglangEpSize to a divisor of ${perEngine} (usually equal to it)`,
      });
    }
    if (arch.routedExperts > 0 && arch.routedExperts % s.sglangEpSize !== 0) {
      findings.push({
        severity: 'error',
        path: 'sglang.sglangEpSize',
        message: `${arch.routedExperts} routed experts do not divide over SGLang EP ${s.sglangEpSize}`,
        fix: `choose an EP size that divides ${arch.routedExperts}`,
      });
    }
  }
  if (s.sglangMoeA2aBackend === 'deepep' && (s.sglangEpSize ?? 1) <= 1) {
    findings.push({
      severity: 'warning',
      path: 'sglang.sglangMoeA2aBackend',
      message: 'the deepep all-to-all backend does nothing without expert parallelism (sglang.sglangEpSize > 1)',
      fix: 'set sglang.sglangEpSize or drop the deepep backend',
    });
  }
  const dpSize = s.sglangDpSize ?? 1;
  if (s.sglangEnableDpAttention && s.sglangDpSize === undefined) {
    findings.push({
      severity: 'error',
      path: 'sglang.sglangDpSize',
      message: 'DP attention is enabled without a DP size',
      fix: 'set sglang.sglangDpSize (a divisor of the engine size)',
    });
  }
  if (perEngine % dpSize !== 0) {
    findings.push({
      severity: 'error',
      path: 'sglang.sglangDpSize',
      message: `SGLang DP ${dpSize} does not divide the engine's ${perEngine} GPUs`,
      fix: `choose a divisor of ${perEngine}`,
    });
  }
  if (dpSize > 1 && !s.sglangEnableDpAttention) {
    findings.push({
      severity: 'warning',
      path: 'sglang.sglangEnableDpAttention',
      message: `SGLang DP size ${dpSize} has no effect without DP attention`,
      fix: 'enable sglang.sglangEnableDpAttention or drop sglang.sglangDpSize',
    });
  }
  let concurrencyPerDpRank: number | undefined;
  if (s.sglangServerConcurrency !== undefined) {
    concurrencyPerDpRank = s.sglangServerConcurrency / dpSize;
    if (!Number.isInteger(concurrencyPerDpRank)) {
      findings.push({
        severity: 'warning',
        path: 'sglang.sglangServerConcurrency',
        message: `concurrency ${s.sglangServerConcurrency} does not split evenly over ${dpSize} DP ranks`,
        fix: `use a multiple of ${dpSize}`,
      });
    }
    const inFlight = spec.rollout.rolloutBatchSize * spec.rollout.nSamplesPerPrompt;
    if (engines > 0 && s.sglangServerConcurrency * engines < inFlight) {
      findings.push({
        severity: 'warning',
        path: 'sglang.sglangServerConcurrency',
        message: `${engines} engines x ${s.sglangServerConcurrency} concurrent requests < ${inFlight} samples per rollout: generation is serialised`,
        fix: 'raise sglang.sglangServerConcurrency',
      });
    }
  }
  const gpusPerNode = spec.distributed.actorNumGpusPerNode;
  return {
    gpus,
    gpusPerEngine: perEngine,
    engines,
    nodesPerEngine: Math.max(1, Math.ceil(perEngine / gpusPerNode)),
    sglangDpSize: dpSize,
    concurrencyPerDpRank,
  };
}

function planBatch(spec: Spec, layout: ParallelLayout, findings: Finding[]): Plan['batch'] {
  const r = spec.rollout;
  const samplesPerRollout = r.rolloutBatchSize * r.nSamplesPerPrompt;
  let stepsPerRollout = 0;
  if (samplesPerRollout % r.globalBatchSize !== 0) {
    findings.push({
      severity: 'error',
      path: 'rollout.globalBatchSize',
      message: `rollout batch ${r.rolloutBatchSize} x ${r.nSamplesPerPrompt} samples = ${samplesPerRollout} is not a multiple of the global batch ${r.globalBatchSize}`,
      fix: `choose a global batch that divides ${samplesPerRollout}`,
    });
  } else {
    stepsPerRollout = samplesPerRollout / r.globalBatchSize;
    if (r.numStepsPerRollout !== undefined && r.numStepsPerRollout !== stepsPerRollout) {
      findings.push({
        severity: 'error',
        path: 'rollout.numStepsPerRollout',
        message: `num-steps-per-rollout ${r.numStepsPerRollout} disagrees with ${samplesPerRollout} samples / global batch ${r.globalBatchSize} = ${stepsPerRollout}`,
        fix: 'set one of them, not both',
      });
    }
  }
  if (layout.dp > 0 && r.globalBatchSize % layout.dp !== 0) {
    findings.push({
      severity: 'error',
      path: 'rollout.globalBatchSize',
      message: `global batch ${r.globalBatchSize} does not split over ${layout.dp} data-parallel ranks`,
      fix: `use a multiple of ${layout.dp}`,
    });
  }
  if (r.overSamplingBatchSize !== undefined && r.overSamplingBatchSize < r.rolloutBatchSize) {
    findings.push({
      severity: 'error',
      path: 'rollout.overSamplingBatchSize',
      message: `over-sampling batch ${r.overSamplingBatchSize} is smaller than the rollout batch ${r.rolloutBatchSize}`,
      fix: `set it >= ${r.rolloutBatchSize} (the recipe uses 2x)`,
    });
  }
  if (r.dynamicSamplingFilterPath && r.overSamplingBatchSize === undefined) {
    findings.push({
      severity: 'warning',
      path: 'rollout.overSamplingBatchSize',
      message: 'a dynamic sampling filter without over-sampling refills one rollout batch at a time',
      fix: 'set rollout.overSamplingBatchSize (e.g. 2x the rollout batch)',
    });
  }
  if (r.overSamplingBatchSize !== undefined && !r.dynamicSamplingFilterPath) {
    findings.push({
      severity: 'warning',
      path: 'rollout.overSamplingBatchSize',
      message: 'over-sampling has no effect without a dynamic sampling filter',
      fix: 'set rollout.dynamicSamplingFilterPath or drop over-sampling',
    });
  }
  if (r.dynamicSamplingFilterPath?.endsWith('check_reward_nonzero_std') && r.nSamplesPerPrompt < 2) {
    findings.push({
      severity: 'error',
      path: 'rollout.nSamplesPerPrompt',
      message:
        'the nonzero-std filter needs at least 2 samples per prompt: with 1 every group is dropped and sampling never ends',
      fix: 'set rollout.nSamplesPerPrompt >= 2',
    });
  }
  return {
    samplesPerRollout,
    globalBatch: r.globalBatchSize,
    stepsPerRollout,
    overSamplingBatch: r.overSamplingBatchSize,
    samplesPerDpRank: layout.dp > 0 ? r.globalBatchSize / layout.dp : 0,
  };
}

function planTokens(spec: Spec, findings: Finding[]): Plan['tokens'] {
  const r = spec.rollout;
  const perf = spec.perf;
  const perSampleMax = r.promptMaxTokens + r.rolloutMaxResponseLen;
  let budgetPerCpGroup: number | undefined;
  if (perf.useDynamicBatchSize) {
    if (perf.maxTokensPerGpu === undefined) {
      findings.push({
        severity: 'error',
        path: 'perf.maxTokensPerGpu',
        message: 'dynamic batch size needs max-tokens-per-gpu',
        fix: 'set perf.maxTokensPerGpu',
      });
    } else {
      budgetPerCpGroup = perf.maxTokensPerGpu * perf.contextParallelSize;
      if (budgetPerCpGroup < perSampleMax) {
        findings.push({
          severity: 'warning',
          path: 'perf.maxTokensPerGpu',
          message: `max-tokens-per-gpu ${perf.maxTokensPerGpu} x CP ${perf.contextParallelSize} = ${budgetPerCpGroup} tokens is less than one sample of up to ${perSampleMax} (prompt ${r.promptMaxTokens} + response ${r.rolloutMaxResponseLen}): such a sample gets a micro-batch of its own, over budget, and may run out of GPU memory`,
          fix: `raise perf.maxTokensPerGpu to >= ${Math.ceil(perSampleMax / perf.contextParallelSize)} or the context parallel size`,
        });
      }
    }
  } else if (perf.maxTokensPerGpu !== undefined) {
    findings.push({
      severity: 'warning',
      path: 'perf.maxTokensPerGpu',
      message: 'max-tokens-per-gpu is ignored without dynamic batch size',
      fix: 'enable perf.useDynamicBatchSize',
    });
  }
  const evalLen = spec.eval.evalMaxResponseLen;
  if (budgetPerCpGroup !== undefined && evalLen !== undefined && r.promptMaxTokens + evalLen > budgetPerCpGroup) {
    findings.push({
      severity: 'warning',
      path: 'eval.evalMaxResponseLen',
      message: `eval responses up to ${evalLen} tokens exceed the training token budget ${budgetPerCpGroup}`,
    });
  }
  return { perSampleMax, budgetPerCpGroup };
}

function checkGrpo(spec: Spec, findings: Finding[]): void {
  const g = spec.grpo;
  if (g.epsClipHigh !== undefined && g.epsClipHigh < g.epsClip) {
    findings.push({
      severity: 'error',
      path: 'grpo.epsClipHigh',
      message: `eps-clip-high ${g.epsClipHigh} is below eps-clip ${g.epsClip}: the upper clip would be tighter than the lower`,
      fix: `set grpo.epsClipHigh >= ${g.epsClip} (the recipe uses 0.28 with 0.2)`,
    });
  }
  const paths = modelPaths(spec);
  const convertProducesRef = Object.values(spec.steps).some((s) => s.kind === 'torch-dist-convert');
  const trains = Object.values(spec.steps).some((s) => s.kind === 'train');
  if (g.useKlLoss && trains) {
    if (!convertProducesRef && stripTrailingSlash(paths.refLoad) === stripTrailingSlash(paths.torchDist)) {
      findings.push({
        severity: 'error',
        path: 'grpo.useKlLoss',
        message: `KL loss needs a reference model, but no step produces ${paths.refLoad} (there is no torch-dist-convert step)`,
        fix: 'add a torch-dist-convert step, point ckpt.refLoad at an existing torch_dist checkpoint, or drop useKlLoss',
      });
    }
    if (g.klLossCoef === undefined || g.klLossCoef === 0) {
      findings.push({
        severity: 'warning',
        path: 'grpo.klLossCoef',
        message: 'use-kl-loss with kl-loss-coef 0 loads a reference model whose KL term is multiplied by zero',
        fix: 'drop grpo.useKlLoss to save the reference model memory and time, or set a coefficient',
      });
    }
  } else if (g.klLossCoef !== undefined && g.klLossCoef > 0) {
    findings.push({
      severity: 'warning',
      path: 'grpo.klLossCoef',
      message: `kl-loss-coef ${g.klLossCoef} has no effect without use-kl-loss`,
      fix: 'enable grpo.useKlLoss or drop the coefficient',
    });
  }
  if (g.entropyCoef !== undefined && g.entropyCoef > 0.1) {
    findings.push({
      severity: 'warning',
      path: 'grpo.entropyCoef',
      message: `entropy coefficient ${g.entropyCoef} is unusually large for GRPO`,
    });
  }
}

function planSchedule(spec: Spec, findings: Finding[]): Plan['schedule'] {
  const n = spec.rollout.numRollout;
  const save = spec.ckpt.saveInterval;
  const evalInterval = spec.eval.evalInterval;
  const checkpoints = checkpointSchedule(n, save);
  if (save > n) {
    findings.push({
      severity: 'warning',
      path: 'ckpt.saveInterval',
      message: `save interval ${save} is longer than the run (${n} rollouts): the only checkpoint is at the end, a failure loses everything`,
      fix: `set ckpt.saveInterval below ${n}`,
    });
  }
  if (save % evalInterval !== 0 && evalInterval % save !== 0) {
    findings.push({
      severity: 'warning',
      path: 'eval.evalInterval',
      message: `eval every ${evalInterval} and save every ${save} rollouts rarely coincide: most checkpoints have no eval score, so keeping the best checkpoint cannot judge them`,
      fix: `make one interval a multiple of the other (the recipe uses ${save} for both)`,
    });
  } else if (evalInterval > save) {
    findings.push({
      severity: 'info',
      path: 'eval.evalInterval',
      message: `only every ${evalInterval / save}th checkpoint gets an eval score`,
    });
  }
  if (n % save !== 0) {
    findings.push({
      severity: 'info',
      path: 'ckpt.saveInterval',
      message: `${n} rollouts is not a multiple of ${save}: slime also saves at the last rollout (${n - 1})`,
    });
  }
  return {
    checkpoints: checkpoints.count,
    firstCheckpoint: checkpoints.first,
    lastCheckpoint: checkpoints.last,
    evals: Math.floor(n / evalInterval),
  };
}
