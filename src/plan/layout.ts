// Parallel layout arithmetic: Megatron's world = TP x PP x CP x DP; experts over EP x ETP inside each stage;
// per-stage layer counts with first/last-stage overrides. Pure.
import type { Finding } from './findings.js';

export interface StageSplit {
  stageLayers: number[];
  problem?: { message: string; fix: string; field: 'first' | 'last' | 'pp' };
}

/**
 * Layers per pipeline stage. With an override for the first and/or last stage, the remaining layers are split
 * evenly over the other stages (Megatron requires them to divide evenly).
 */
export function splitStages(numLayers: number, pp: number, first?: number, last?: number): StageSplit {
  if (pp === 1) {
    const extra = first !== undefined || last !== undefined;
    return extra
      ? {
          stageLayers: [numLayers],
          problem: {
            message: 'first/last pipeline stage layer counts are set but there is one pipeline stage',
            fix: 'remove decoder-first/last-pipeline-num-layers or raise pipeline-model-parallel-size',
            field: 'pp',
          },
        }
      : { stageLayers: [numLayers] };
  }
  let remaining = numLayers;
  let middleStages = pp;
  if (first !== undefined) {
    remaining -= first;
    middleStages -= 1;
  }
  if (last !== undefined) {
    remaining -= last;
    middleStages -= 1;
  }
  if (remaining < 0 || (middleStages === 0 && remaining !== 0)) {
    const given = [first, last].filter((v) => v !== undefined).join(' + ');
    return {
      stageLayers: [],
      problem: {
        message: `first/last stage layers (${given}) do not leave ${middleStages ? 'room for' : 'exactly'} the other layers of ${numLayers}`,
        fix: `make the stage layer counts add up to ${numLayers}`,
        field: last !== undefined ? 'last' : 'first',
      },
    };
  }
  if (middleStages > 0 && remaining % middleStages !== 0) {
    return {
      stageLayers: [],
      problem: {
        message: `${remaining} layers do not split evenly over the ${middleStages} other stages`,
        fix: `choose first/last stage layer counts so that ${numLayers} - first - last is a multiple of ${middleStages}`,
        field: last !== undefined ? 'last' : 'first',
      },
    };
  }
  const middle = middleStages > 0 ? remaining / middleStages : 0;
  if (middleStages > 0 && middle === 0) {
    return {
      stageLayers: [],
      problem: {
        message: `the middle stages would hold no layers`,
        fix: 'lower the first/last stage layer counts or the pipeline-model-parallel-size',
        field: 'pp',
      },
    };
  }
  const stageLayers = Array.from({ length: pp }, () => middle);
  if (first !== undefined) stageLayers[0] = first;
  if (last !== undefined) stageLayers[pp - 1] = last;
  return { stageLayers };
}

export interface ParallelInput {
  worldSize: number;
  tp: number;
  pp: number;
  cp: number;
  ep: number;
  etp: number;
  numLayers: number;
  routedExperts: number;
  first?: number;
  last?: number;
}

export interface ParallelLayout {
  worldSize: number;
  tp: number;
  pp: number;
  cp: number;
  ep: number;
  etp: number;
  dp: number;
  /** ranks inside one pipeline stage (world / PP): where experts are spread */
  ranksPerStage: number;
  expertDp: number;
  expertsPerRank: number;
  stageLayers: number[];
}

/** Derive a layout and its findings; `path` prefixes the spec paths of the findings (perf or conversion). */
export function deriveLayout(
  input: ParallelInput,
  paths: { tp: string; pp: string; cp?: string; ep: string; etp: string; first: string; last: string; world: string },
  findings: Finding[],
): ParallelLayout {
  const { worldSize, tp, pp, cp, ep, etp, numLayers, routedExperts } = input;
  const modelParallel = tp * pp * cp;
  let dp = 0;
  if (worldSize % modelParallel !== 0) {
    findings.push({
      severity: 'error',
      path: paths.tp,
      message: `TP ${tp} x PP ${pp} x CP ${cp} = ${modelParallel} does not divide the ${worldSize} GPUs`,
      fix: `make TP x PP x CP a divisor of ${worldSize} (or change ${paths.world})`,
    });
  } else {
    dp = worldSize / modelParallel;
  }
  const ranksPerStage = worldSize % pp === 0 ? worldSize / pp : 0;
  let expertDp = 0;
  let expertsPerRank = 0;
  if (routedExperts > 0) {
    if (ranksPerStage === 0 || ranksPerStage % (ep * etp) !== 0) {
      findings.push({
        severity: 'error',
        path: paths.ep,
        message: `EP ${ep} x ETP ${etp} = ${ep * etp} does not divide the ${ranksPerStage || worldSize / pp} ranks of a pipeline stage (world ${worldSize} / PP ${pp})`,
        fix: `choose EP x ETP dividing ${ranksPerStage || 'world / PP'}`,
      });
    } else {
      expertDp = ranksPerStage / (ep * etp);
    }
    if (routedExperts % ep !== 0) {
      findings.push({
        severity: 'error',
        path: paths.ep,
        message: `${routedExperts} routed experts do not divide over EP ${ep}`,
        fix: `choose an EP that divides ${routedExperts}`,
      });
    } else {
      expertsPerRank = routedExperts / ep;
    }
  } else if (ep > 1) {
    findings.push({
      severity: 'error',
      path: paths.ep,
      message: `expert parallel size ${ep} on a model without routed experts`,
      fix: 'set the expert model parallel size to 1',
    });
  }
  if (pp > numLayers) {
    findings.push({
      severity: 'error',
      path: paths.pp,
      message: `PP ${pp} is more than the model's ${numLayers} layers`,
      fix: `choose PP <= ${numLayers}`,
    });
  }
  const split = splitStages(numLayers, pp, input.first, input.last);
  if (split.problem) {
    const field =
      split.problem.field === 'first' ? paths.first : split.problem.field === 'last' ? paths.last : paths.pp;
    findings.push({ severity: 'error', path: field, message: split.problem.message, fix: split.problem.fix });
  }
  return {
    worldSize,
    tp,
    pp,
    cp,
    ep,
    etp,
    dp,
    ranksPerStage,
    expertDp,
    expertsPerRank,
    stageLayers: split.stageLayers,
  };
}
