// slime / Megatron argument groups from a spec's typed fields, in the recipe's order. Pure.
import type { Spec } from '../spec/schema.js';
import { modelPaths } from '../spec/paths.js';

/** camelCase field -> --kebab-case flag: tensorModelParallelSize -> --tensor-model-parallel-size. */
export function flagName(field: string): string {
  return '--' + field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** Numbers as a person writes them in a launch script: 1e-6 rather than 0.000001. */
export function formatNumber(value: number): string {
  if (value !== 0 && Math.abs(value) < 1e-4) return value.toExponential();
  return String(value);
}

type FieldValue = string | number | boolean | undefined;

/** Flags for a flat object of fields: booleans become bare flags when true, undefined is left out. */
export function flagsFor(fields: Record<string, FieldValue>, skip: readonly string[] = []): string[] {
  const argv: string[] = [];
  for (const [field, value] of Object.entries(fields)) {
    if (skip.includes(field) || value === undefined || value === false) continue;
    if (value === true) argv.push(flagName(field));
    else argv.push(flagName(field), typeof value === 'number' ? formatNumber(value) : value);
  }
  return argv;
}

export interface ArgGroups {
  DISTRIBUTED_ARGS: string[];
  CKPT_ARGS: string[];
  ROLLOUT_ARGS: string[];
  OPTIMIZER_ARGS: string[];
  GRPO_ARGS: string[];
  PERF_ARGS: string[];
  EVAL_ARGS: string[];
  SGLANG_ARGS: string[];
  MISC_ARGS: string[];
  EXTRA_ARGS: string[];
}

/** The order slime's run-deepseek-r1.sh passes them to train.py (MODEL_ARGS comes first, from the model script). */
export const groupOrder: (keyof ArgGroups)[] = [
  'DISTRIBUTED_ARGS',
  'CKPT_ARGS',
  'ROLLOUT_ARGS',
  'OPTIMIZER_ARGS',
  'GRPO_ARGS',
  'PERF_ARGS',
  'EVAL_ARGS',
  'SGLANG_ARGS',
  'MISC_ARGS',
  'EXTRA_ARGS',
];

export function trainArgGroups(spec: Spec, overrides: { numRollout?: number } = {}): ArgGroups {
  const paths = modelPaths(spec);
  const evalArgs: string[] = [flagName('evalInterval'), String(spec.eval.evalInterval)];
  evalArgs.push(
    '--eval-prompt-data',
    ...spec.eval.evalPromptData.flatMap((d) => [d.name, underBaseIfRelative(spec, d.path)]),
  );
  evalArgs.push(
    ...flagsFor({
      nSamplesPerEvalPrompt: spec.eval.nSamplesPerEvalPrompt,
      evalMaxResponseLen: spec.eval.evalMaxResponseLen,
      evalTopP: spec.eval.evalTopP,
    }),
  );
  const rollout = { ...spec.rollout, numRollout: overrides.numRollout ?? spec.rollout.numRollout };
  return {
    DISTRIBUTED_ARGS: flagsFor({
      actorNumNodes: spec.distributed.actorNumNodes,
      actorNumGpusPerNode: spec.distributed.actorNumGpusPerNode,
      colocate: spec.distributed.colocate,
      rolloutNumGpus: spec.distributed.colocate ? undefined : spec.distributed.rolloutNumGpus,
    }),
    CKPT_ARGS: [
      '--hf-checkpoint',
      paths.hfCheckpoint,
      '--ref-load',
      paths.refLoad,
      '--load',
      paths.load,
      '--save',
      paths.save,
      '--save-interval',
      String(spec.ckpt.saveInterval),
    ],
    ROLLOUT_ARGS: flagsFor({ ...rollout, promptData: underBaseIfRelative(spec, rollout.promptData) }, [
      'promptMaxTokens',
    ]),
    OPTIMIZER_ARGS: flagsFor(spec.optimizer),
    GRPO_ARGS: flagsFor(spec.grpo),
    PERF_ARGS: flagsFor(spec.perf),
    EVAL_ARGS: evalArgs,
    SGLANG_ARGS: flagsFor(spec.sglang),
    MISC_ARGS: flagsFor(spec.misc),
    EXTRA_ARGS: [...spec.extraArgs],
  };
}

function underBaseIfRelative(spec: Spec, path: string): string {
  return path.startsWith('/') ? path : `${spec.storage.baseDir.replace(/\/$/, '')}/${path}`;
}

/** The conversion's own parallel flags (the recipe's torchrun command). */
export function conversionArgs(spec: Spec): string[] {
  const c = spec.conversion;
  return flagsFor({
    tensorModelParallelSize: c.tensorModelParallelSize,
    pipelineModelParallelSize: c.pipelineModelParallelSize,
    expertTensorParallelSize: c.expertTensorParallelSize,
    expertModelParallelSize: c.expertModelParallelSize,
    decoderFirstPipelineNumLayers: c.decoderFirstPipelineNumLayers,
    decoderLastPipelineNumLayers: c.decoderLastPipelineNumLayers,
  });
}
