// A Slurm run inside its allocation: allocate (or adopt, by the run's job name) before the first step, run the
// pipeline on the nodes Slurm gave, and release the allocation however the run ends (succeeded, failed, cancelled).
import { CancellationScope, log, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import type { SlurmAllocation } from '../activities/slurm.js';
import { placeOnAllocation } from '../src/spec/slurm-allocation.js';
import type { Spec } from '../src/spec/schema.js';
import { statusQuery, type AllocationStatus } from './definitions.js';
import { allocating, releasing } from './options.js';

/** The holder job's name (as activities/slurm.ts names it): the run's id. */
function jobNameOf(runKey: string): string {
  return `keel-${runKey}`.slice(0, 200);
}

export async function inSlurmAllocation<T>(
  spec: Spec,
  run: (placed: Spec, allocation: AllocationStatus) => Promise<T>,
): Promise<T> {
  const runKey = workflowInfo().workflowId;
  const status: AllocationStatus = { jobName: jobNameOf(runKey), state: 'allocating' };
  // Until the pipeline answers `status` itself: the run waits for its allocation.
  setHandler(statusQuery, () => ({
    name: spec.name,
    preset: spec.preset,
    phase: 'validating',
    paused: false,
    steps: [],
    warnings: [],
    allocation: status,
  }));
  let allocation: SlurmAllocation | undefined;
  let why = 'the run ended';
  try {
    allocation = await proxyActivities<Activities>(allocating(spec)).slurmAllocate({ spec, runKey });
    Object.assign(status, {
      jobId: allocation.jobId,
      state: 'held',
      nodes: allocation.nodes,
      adopted: allocation.adopted,
      pendingMs: allocation.pendingMs,
      pendingReason: allocation.pendingReason,
    });
    return await run(placeOnAllocation(spec, allocation), status);
  } catch (error) {
    why = `the run failed or was cancelled: ${(error as Error).message ?? String(error)}`;
    throw error;
  } finally {
    status.state = 'releasing';
    await CancellationScope.nonCancellable(() =>
      proxyActivities<Activities>(releasing(spec)).slurmRelease({ spec, runKey, jobId: allocation?.jobId, why }),
    ).then(
      () => {
        status.state = 'released';
      },
      (error: unknown) => log.error('releasing the Slurm allocation failed', { error: String(error) }),
    );
  }
}
