// The input paths training reads, each with what it is and the spec field it comes from. Pure.
import type { Spec } from '../spec/schema.js';
import { modelPaths, stripTrailingSlash, underBase } from '../spec/paths.js';

export interface TrainingInput {
  /** what it is and the spec field it comes from */
  what: string;
  path: string;
}

export function trainingInputs(spec: Spec): TrainingInput[] {
  const paths = modelPaths(spec);
  const inputs: TrainingInput[] = [
    { what: 'prompt data (rollout.promptData)', path: underBase(spec, spec.rollout.promptData) },
    ...spec.eval.evalPromptData.map((d, i) => ({
      what: `eval data '${d.name}' (eval.evalPromptData[${i}])`,
      path: underBase(spec, d.path),
    })),
    { what: '--hf-checkpoint', path: paths.hfCheckpoint },
    { what: '--ref-load', path: paths.refLoad },
    { what: 'the slime checkout (slime.dir)', path: spec.slime.dir },
    { what: 'the Megatron checkout (slime.megatronPath)', path: spec.slime.megatronPath },
  ];
  const seen = new Set<string>();
  return inputs
    .map((i) => ({ ...i, path: stripTrailingSlash(i.path) }))
    .filter((i) => !seen.has(i.path) && seen.add(i.path));
}
