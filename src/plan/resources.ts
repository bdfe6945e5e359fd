// Memory and storage estimates. Rough on purpose: they catch the configuration that cannot fit, not the last GB.
import type { Spec } from '../spec/schema.js';
import type { Finding } from './findings.js';
import type { ParallelLayout } from './layout.js';

const GB = 1e9;
const TB = 1e12;

/**
 * Host memory for CPU Adam, calibrated on the recipe's own figure: 1.4-1.5 TB per node for 671B parameters on 16
 * nodes, i.e. ~34.6 bytes of host memory per parameter across the cluster (master weights, moments, gradients and
 * pinned staging buffers).
 */
export const CPU_ADAM_HOST_BYTES_PER_PARAM = (1.45 * TB * 16) / 671e9;
/** bf16 weights + fp32 master + two fp32 Adam moments (slime's checkpoints: ~14 bytes per parameter per checkpoint). */
export const CHECKPOINT_BYTES_PER_PARAM = 14;

export interface MemoryEstimate {
  expertParameters: number;
  denseParameters: number;
  parametersPerGpu: number;
  gpuBytesPerGpu: number;
  gpuBytesAvailable: number;
  hostBytesPerNode: number;
  hostBytesAvailable?: number;
}

export function estimateMemory(spec: Spec, layout: ParallelLayout, findings: Finding[]): MemoryEstimate {
  const arch = spec.model.architecture;
  const moeLayers = Math.max(0, arch.numLayers - arch.firstDenseLayers);
  const expertParameters = Math.min(
    arch.parameters,
    moeLayers * arch.routedExperts * 3 * arch.hiddenSize * arch.moeFfnHiddenSize,
  );
  const denseParameters = arch.parameters - expertParameters;
  const tp = Math.max(1, layout.tp);
  const pp = Math.max(1, layout.pp);
  const parametersPerGpu =
    denseParameters / (tp * pp) + (expertParameters > 0 ? expertParameters / (layout.ep * layout.etp * pp) : 0);
  const gradBytes = spec.misc.accumulateAllreduceGradsInFp32 ? 4 : 2;
  const optimizerOnGpu = spec.optimizer.optimizerCpuOffload ? 0 : 12;
  const gpuBytesPerGpu = parametersPerGpu * (2 + gradBytes + optimizerOnGpu);
  const gpuBytesAvailable = spec.cluster.gpuMemoryGiB * 2 ** 30;
  if (gpuBytesPerGpu > 0.9 * gpuBytesAvailable) {
    findings.push({
      severity: 'error',
      path: spec.optimizer.optimizerCpuOffload ? 'perf.tensorModelParallelSize' : 'optimizer.optimizerCpuOffload',
      message: `weights, gradients${optimizerOnGpu ? ' and Adam state' : ''} need ~${fmtBytes(gpuBytesPerGpu)} per GPU, more than 90% of ${spec.cluster.gpuMemoryGiB} GiB (before activations)`,
      fix: optimizerOnGpu
        ? 'enable optimizer.optimizerCpuOffload (CPU Adam) or raise TP/PP/EP'
        : 'raise TP/PP/EP to spread the weights over more GPUs',
    });
  }

  const nodes = spec.distributed.actorNumNodes;
  const hostBytesPerNode = spec.optimizer.optimizerCpuOffload
    ? (arch.parameters * CPU_ADAM_HOST_BYTES_PER_PARAM) / nodes
    : 0;
  const hostBytesAvailable = spec.cluster.hostMemoryBytes;
  if (spec.optimizer.optimizerCpuOffload) {
    if (hostBytesAvailable !== undefined && hostBytesAvailable < hostBytesPerNode) {
      findings.push({
        severity: 'error',
        path: 'cluster.hostMemoryBytes',
        message: `CPU Adam needs ~${fmtBytes(hostBytesPerNode)} of host memory per node (the recipe says 1.4-1.5 TB for R1 on 16 nodes); nodes have ${fmtBytes(hostBytesAvailable)}`,
        fix: 'add nodes (more GPUs spread the optimizer state) or turn off optimizer.optimizerCpuOffload',
      });
    } else if (hostBytesAvailable === undefined) {
      findings.push({
        severity: 'info',
        path: 'optimizer.optimizerCpuOffload',
        message: `CPU Adam needs ~${fmtBytes(hostBytesPerNode)} of host memory per node; the probe step checks it on every node`,
      });
    }
  }
  return {
    expertParameters,
    denseParameters,
    parametersPerGpu,
    gpuBytesPerGpu,
    gpuBytesAvailable,
    hostBytesPerNode,
    hostBytesAvailable,
  };
}

export interface StorageEstimate {
  downloadBytes: number;
  bf16Bytes: number;
  torchDistBytes: number;
  checkpointBytes: number;
  checkpointsKept: number;
  checkpointsTotal: number;
  totalBytes: number;
  freeBytes?: number;
}

export interface CheckpointSchedule {
  count: number;
  first?: number;
  last?: number;
}

/**
 * The rollout ids at which slime saves -- (id+1) % interval == 0, and the last rollout -- counted, not listed: the
 * cost is the same for 3000 rollouts and for 2^53.
 */
export function checkpointSchedule(numRollout: number, interval: number): CheckpointSchedule {
  if (numRollout <= 0 || interval <= 0) return { count: 0 };
  const regular = Math.floor(numRollout / interval);
  const count = regular + (numRollout % interval === 0 ? 0 : 1);
  return { count, first: regular > 0 ? interval - 1 : numRollout - 1, last: numRollout - 1 };
}

export function estimateStorage(spec: Spec, findings: Finding[]): StorageEstimate {
  const arch = spec.model.architecture;
  const bf16Bytes = spec.model.bf16Bytes ?? arch.parameters * 2;
  const downloadBytes = spec.model.fp8Bytes ?? bf16Bytes;
  const hasCast = Object.values(spec.steps).some((s) => s.kind === 'fp8-cast');
  const torchDistBytes = bf16Bytes;
  const checkpointBytes = arch.parameters * CHECKPOINT_BYTES_PER_PARAM;
  const checkpointsTotal = checkpointSchedule(spec.rollout.numRollout, spec.ckpt.saveInterval).count;
  const { keepLast, keepEvery, keepBest } = spec.policies.retention;
  const checkpointsKept =
    keepLast === undefined
      ? checkpointsTotal
      : Math.min(
          checkpointsTotal,
          keepLast + keepBest + (keepEvery ? Math.floor(spec.rollout.numRollout / keepEvery) : 0) + 1,
        );
  const totalBytes = downloadBytes + (hasCast ? bf16Bytes : 0) + torchDistBytes + checkpointBytes * checkpointsKept;
  const freeBytes = spec.storage.freeBytes;
  if (keepLast === undefined && checkpointsTotal > 10) {
    findings.push({
      severity: 'warning',
      path: 'policies.retention.keepLast',
      message: `no retention: all ${checkpointsTotal} checkpoints of ~${fmtBytes(checkpointBytes)} are kept (${fmtBytes(checkpointBytes * checkpointsTotal)})`,
      fix: 'set policies.retention.keepLast (and keepEvery / keepBest)',
    });
  }
  if (freeBytes !== undefined && totalBytes > freeBytes) {
    findings.push({
      severity: 'error',
      path: 'storage.freeBytes',
      message: `the run needs ~${fmtBytes(totalBytes)} at ${spec.storage.baseDir} (download, BF16 copy, torch_dist, ${checkpointsKept} checkpoints of ${fmtBytes(checkpointBytes)}); ${fmtBytes(freeBytes)} free`,
      fix: 'free space, or keep fewer checkpoints (policies.retention)',
    });
  }
  return {
    downloadBytes,
    bf16Bytes: hasCast ? bf16Bytes : 0,
    torchDistBytes,
    checkpointBytes,
    checkpointsKept,
    checkpointsTotal,
    totalBytes,
    freeBytes,
  };
}

export function fmtBytes(bytes: number): string {
  const units: [number, string][] = [
    [1e15, 'PB'],
    [TB, 'TB'],
    [GB, 'GB'],
    [1e6, 'MB'],
    [1e3, 'kB'],
  ];
  for (const [size, unit] of units)
    if (bytes >= size) return `${(bytes / size).toFixed(bytes / size >= 100 ? 0 : 1)} ${unit}`;
  return `${Math.round(bytes)} B`;
}
