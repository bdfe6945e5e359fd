// A Slurm run inside its allocation: allocate (or adopt, by the run's job name) before the first step, run the
// pipeline on the nodes Slurm gave, and release the allocation however the run ends (succeeded, failed, cancelled).
import {
  CancellationScope,
  ParentClosePolicy,
  condition,
  isCancellation,
  log,
  patched,
  proxyActivities,
  setHandler,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import type { SlurmAllocation } from '../activities/slurm.js';
import { keelPhase } from '../src/search-attributes.js';
import { durationMs } from '../src/spec/duration.js';
import { placeOnAllocation } from '../src/spec/slurm-allocation.js';
import type { Spec } from '../src/spec/schema.js';
import { statusQuery, type AllocationStatus } from './definitions.js';
import { announceAllocationPending } from './notify.js';
import { allocating, quick, releasing } from './options.js';
import { patches } from './patches.js';

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
    allocation = await allocate(spec, runKey, status.jobName);
    Object.assign(status, {
      jobId: allocation.jobId,
      state: 'held',
      nodes: allocation.nodes,
      adopted: allocation.adopted,
      pendingMs: allocation.pendingMs,
      pendingReason: allocation.pendingReason,
    });
    // A terminated run runs no code of its own: its guard, cancelled by Temporal when the run closes, releases the job.
    // Started outside the run's cancellation scope: a cancelled run releases its job itself, after training stopped.
    if (patched(patches.slurmReleaseGuard)) {
      const jobId = allocation.jobId;
      await CancellationScope.nonCancellable(() =>
        startChild(slurmAllocationGuard, {
          workflowId: `${runKey}-slurm-${jobId}`,
          args: [{ spec, runKey, jobId }],
          parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
        }),
      );
    }
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

/**
 * Allocate (or adopt) the run's holder job. keel 0.6: the run shows `allocating` in the Web UI (KeelPhase) meanwhile,
 * and one still waiting after `notifyPendingAfter` is announced with Slurm's reason.
 */
async function allocate(spec: Spec, runKey: string, jobName: string): Promise<SlurmAllocation> {
  const allocated = proxyActivities<Activities>(allocating(spec)).slurmAllocate({ spec, runKey });
  if (spec.cluster.executor.kind !== 'slurm' || !patched(patches.slurmPending)) return allocated;
  upsertSearchAttributes([{ key: keelPhase, value: 'allocating' }]);
  if ((spec.notify?.webhooks.length ?? 0) === 0) return allocated;
  let done = false;
  const waited = allocated.finally(() => {
    done = true;
  });
  void waited.catch(() => undefined); // awaited below; a cancelled wait must not leave it unhandled
  // a spec prepared by an earlier keel has no such field
  const threshold = durationMs((spec.cluster.executor as { notifyPendingAfter?: string }).notifyPendingAfter ?? '1h');
  const late = !(await condition(() => done, threshold));
  let announced: { delivered: () => Promise<void> } | undefined;
  if (late) {
    const now = await proxyActivities<Activities>(quick(spec))
      .slurmPending({ spec, runKey })
      .catch((error: unknown) => {
        log.warn('reading the pending allocation failed', { error: String(error) });
        return {};
      });
    announced = announceAllocationPending(spec, runKey, { ...now, jobName, waitedMs: threshold });
  }
  try {
    return await waited;
  } finally {
    await announced?.delivered();
  }
}

/**
 * The allocation's guard: a child of the pipeline that waits until it is cancelled -- which Temporal does when the
 * pipeline closes, however it closes (parent-close policy REQUEST_CANCEL), terminated too -- and then ends the job it
 * was started for. Only that job id: a later run of the same id holds a job of the same name, and it is not touched.
 * After a run that released its job itself, the release finds the job ended and returns.
 */
export async function slurmAllocationGuard(input: { spec: Spec; runKey: string; jobId: string }): Promise<void> {
  try {
    await condition(() => false);
  } catch (error) {
    if (!isCancellation(error)) throw error;
    await CancellationScope.nonCancellable(() =>
      proxyActivities<Activities>(releasing(input.spec)).slurmRelease({
        spec: input.spec,
        runKey: input.runKey,
        jobId: input.jobId,
        onlyThisJob: true,
        why: 'the run closed (terminated, or ended without releasing it)',
      }),
    );
  }
}
