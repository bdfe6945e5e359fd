// The micro-batch rule of static batching: Megatron splits each data-parallel rank's share of the global batch into
// micro-batches, so the global batch must divide by DP x micro-batch size. With dynamic batch size slime packs
// micro-batches by tokens (max-tokens-per-gpu) and the micro-batch size is not used. Pure.
import type { Spec } from '../spec/schema.js';
import type { Finding } from './findings.js';
import type { ParallelLayout } from './layout.js';

function divisors(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i + 1).filter((d) => n % d === 0);
}

export function checkMicroBatch(spec: Spec, layout: ParallelLayout, findings: Finding[]): void {
  const { perf, rollout } = spec;
  if (perf.useDynamicBatchSize) {
    if (perf.microBatchSize !== undefined && perf.microBatchSize !== 1) {
      findings.push({
        severity: 'info',
        path: 'perf.microBatchSize',
        message: `micro-batch size ${perf.microBatchSize} is not used with dynamic batch size: micro-batches are packed up to max-tokens-per-gpu`,
      });
    }
    return;
  }
  // a global batch that does not split over DP at all is reported by the batch plan already
  if (layout.dp <= 0 || rollout.globalBatchSize % layout.dp !== 0) return;
  const micro = perf.microBatchSize ?? 1; // slime's default
  const perRank = rollout.globalBatchSize / layout.dp;
  if (rollout.globalBatchSize % (layout.dp * micro) === 0) return;
  const fits = Number.isInteger(perRank) ? divisors(perRank).filter((d) => d <= 16) : [];
  findings.push({
    severity: 'error',
    path: perf.microBatchSize === undefined ? 'rollout.globalBatchSize' : 'perf.microBatchSize',
    message:
      `with static batching the global batch ${rollout.globalBatchSize} must divide by DP ${layout.dp} x micro-batch ` +
      `size ${micro} = ${layout.dp * micro}: Megatron stops at start-up`,
    fix: fits.length
      ? `set perf.microBatchSize to one of ${fits.join(', ')}, or rollout.globalBatchSize to a multiple of ${layout.dp * micro}`
      : `set rollout.globalBatchSize to a multiple of ${layout.dp * micro}, or enable perf.useDynamicBatchSize`,
  });
}
