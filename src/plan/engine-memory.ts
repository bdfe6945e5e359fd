// Whether the model's weights fit one rollout engine: SGLang takes mem-fraction-static of each GPU for weights and
// KV cache together, so the weights per engine GPU must leave room for the KV cache. Rough on purpose: experts are
// split over the engine's EP ranks, the dense part (attention, embeddings, dense layers) over its attention TP group
// (engine GPUs / SGLang DP size when DP attention is on). Pure.
import type { Spec } from '../spec/schema.js';
import { modelPaths, stripTrailingSlash } from '../spec/paths.js';
import type { Finding } from './findings.js';
import { fmtBytes } from './resources.js';

/** SGLang picks the fraction itself when the flag is absent; 0.9 is about what it chooses on 80 GB GPUs. */
const SGLANG_DEFAULT_FRACTION = 0.9;
/** Below this share of the static pool left for the KV cache, rollout crawls (tiny batches, constant retraction). */
const MIN_KV_SHARE = 0.2;

export interface EngineMemory {
  bytesPerParameter: number;
  weightBytesPerGpu: number;
  staticPoolBytesPerGpu: number;
}

export function checkEngineMemory(spec: Spec, findings: Finding[]): EngineMemory {
  const arch = spec.model.architecture;
  const s = spec.sglang;
  const paths = modelPaths(spec);
  // The engines load --hf-checkpoint: the FP8 release for R1 (about one byte per parameter), BF16 otherwise.
  const loadsRelease = stripTrailingSlash(paths.hfCheckpoint) === stripTrailingSlash(paths.download);
  const bytesPerParameter =
    loadsRelease && spec.model.fp8Bytes
      ? spec.model.fp8Bytes / (arch.parameters * (1 + arch.mtpLayers / arch.numLayers))
      : 2;
  const moeLayers = Math.max(0, arch.numLayers - arch.firstDenseLayers);
  const expertParameters = Math.min(
    arch.parameters,
    moeLayers * arch.routedExperts * 3 * arch.hiddenSize * arch.moeFfnHiddenSize,
  );
  const denseParameters = arch.parameters - expertParameters;
  const engineGpus = s.rolloutNumGpusPerEngine;
  const ep = arch.routedExperts > 0 ? (s.sglangEpSize ?? engineGpus) : 1;
  const attentionTp = s.sglangEnableDpAttention ? engineGpus / (s.sglangDpSize ?? 1) : engineGpus;
  const weightBytesPerGpu =
    (expertParameters / Math.max(1, ep) + denseParameters / Math.max(1, attentionTp)) * bytesPerParameter;
  const fraction = s.sglangMemFractionStatic ?? SGLANG_DEFAULT_FRACTION;
  const staticPoolBytesPerGpu = fraction * spec.cluster.gpuMemoryGiB * 2 ** 30;
  const where =
    `${fmtBytes(weightBytesPerGpu)} of weights per GPU of an engine of ${engineGpus} ` +
    `(EP ${ep}, attention TP ${attentionTp}) against a static pool of ${fraction} x ${spec.cluster.gpuMemoryGiB} GiB = ${fmtBytes(staticPoolBytesPerGpu)}` +
    (s.sglangMemFractionStatic === undefined ? ` (SGLang's own fraction, about ${SGLANG_DEFAULT_FRACTION})` : '');
  const fix =
    `raise sglang.rolloutNumGpusPerEngine (and sglang.sglangEpSize) to spread the weights, or sglang.sglangMemFractionStatic` +
    `${spec.distributed.colocate ? ' (colocated: training offloads while the engines run)' : ''}`;
  if (weightBytesPerGpu > staticPoolBytesPerGpu) {
    findings.push({
      severity: 'error',
      path: 'sglang.rolloutNumGpusPerEngine',
      message: `the model does not fit one rollout engine: ${where}`,
      fix,
    });
  } else if (weightBytesPerGpu > (1 - MIN_KV_SHARE) * staticPoolBytesPerGpu) {
    findings.push({
      severity: 'warning',
      path: 'sglang.sglangMemFractionStatic',
      message: `the weights leave less than ${MIN_KV_SHARE * 100}% of the static pool for the KV cache: ${where}`,
      fix,
    });
  }
  return { bytesPerParameter, weightBytesPerGpu, staticPoolBytesPerGpu };
}
