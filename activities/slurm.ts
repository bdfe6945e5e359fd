// The run's Slurm allocation: one holder batch job named after the run, found again by that name (a retried activity
// or a restarted worker adopts it, never submits a second one), and ended with scancel when the run ends.
import { ApplicationFailure, Context, log } from '@temporalio/activity';
import {
  SlurmClient,
  holderJobName,
  holderSbatchArgv,
  terminalJobStates,
  timeLeftMs,
  type SlurmJob,
} from '../src/cluster/slurm.js';
import { durationMs } from '../src/spec/duration.js';
import type { Spec, SlurmExecutorSpec } from '../src/spec/schema.js';
import { activitySignal, heartbeat, localSpec, sleepMs, type ActivityDeps } from './context.js';

export interface SlurmAllocation {
  jobId: string;
  jobName: string;
  /** the allocation's nodes in Slurm's order, with their NodeAddr */
  nodes: { name: string; address: string }[];
  /** adopted: the job already existed (an earlier attempt or worker submitted it) */
  adopted: boolean;
  /** how long it waited in the queue, and Slurm's last reason for the wait */
  pendingMs: number;
  pendingReason?: string;
  /** when Slurm ends the allocation (its time limit, as squeue counts the time left); none without a limit */
  endsAt?: string;
}

/** The allocation's time as Slurm counts it now. */
export interface AllocationTime {
  jobId: string;
  /** Slurm's state of the holder job (RUNNING, TIMEOUT, ...), `GONE` when Slurm no longer lists it */
  state: string;
  /** the job still holds its nodes */
  live: boolean;
  /** when Slurm ends it (now + squeue's time left); none without a limit */
  endsAt?: string;
}

function slurmExecutor(spec: Spec): SlurmExecutorSpec {
  const ex = spec.cluster.executor;
  if (ex.kind !== 'slurm')
    throw ApplicationFailure.nonRetryable('the spec does not use the Slurm executor', 'InvalidSpec');
  return ex;
}

interface WaitDetails {
  jobId: string;
  state: string;
  reason?: string;
  waitingSince: number;
}

/** The wait the previous attempt of this activity heartbeated, when it waited for the same job. */
function previousWait(jobId: string): WaitDetails | undefined {
  try {
    const details = Context.current().info.heartbeatDetails as WaitDetails | undefined;
    return details?.jobId === jobId && typeof details.waitingSince === 'number' ? details : undefined;
  } catch {
    return undefined;
  }
}

/** When Slurm ends the job (now + squeue's time left), or undefined without a limit. */
function endsAtOf(job: SlurmJob): string | undefined {
  const left = timeLeftMs(job.timeLeft);
  return left === undefined ? undefined : new Date(Date.now() + left).toISOString();
}

function isTerminal(job: SlurmJob): boolean {
  return (terminalJobStates as readonly string[]).includes(job.state);
}

export function slurmActivities(deps: ActivityDeps) {
  /**
   * Adopt the run's holder job (by `jobId` in the spec, else by name), or submit it; then wait, heartbeating Slurm's
   * reason, until it runs, and read its nodes and their addresses from Slurm.
   */
  async function slurmAllocate(input: {
    spec: Spec;
    runKey: string;
    /** nodes the allocation must not have (sbatch --exclude): lost under an earlier allocation of the run */
    exclude?: string[];
  }): Promise<SlurmAllocation> {
    const spec = localSpec(input.spec, deps);
    const ex = slurmExecutor(spec);
    const client = new SlurmClient(ex.slurmConf);
    const jobName = holderJobName(input.runKey);
    let jobId = ex.jobId;
    let adopted = jobId !== undefined;
    if (jobId === undefined) {
      const live = await client.jobsNamed(jobName);
      if (live.length > 0) {
        jobId = live[0]!.jobId;
        adopted = true;
        for (const extra of live.slice(1)) {
          // Two holder jobs of one run can only come from outside keel (or a Slurm that lost a reply): keep the oldest.
          log.warn('a second holder job of this run: cancelling it', { jobId: extra.jobId, kept: jobId });
          await client.cancel(extra.jobId, 0).catch(() => undefined);
        }
      } else {
        const nodes = spec.cluster.nodes.length + spec.cluster.spares.length;
        jobId = await client.submit(
          holderSbatchArgv({
            executor: ex,
            runKey: input.runKey,
            nodes,
            gpusPerNode: spec.cluster.gpusPerNode,
            exclude: input.exclude,
          }),
        );
      }
    }
    log.info(adopted ? 'adopted the Slurm allocation' : 'submitted the Slurm allocation', { jobId, jobName });
    // A retried attempt goes on with what the one before it saw of the wait (its last heartbeat).
    const before = previousWait(jobId);
    const started = before?.waitingSince ?? Date.now();
    let pendingReason = before?.reason;
    for (;;) {
      const job = await client.job(jobId);
      if (job === undefined || isTerminal(job)) {
        throw ApplicationFailure.retryable(
          `Slurm job ${jobId} (${jobName}) ended before it ran: ${job ? `${job.state} (${job.reason})` : 'no longer listed'}`,
          'SlurmAllocationEnded',
        );
      }
      if (job.state === 'RUNNING') {
        const names = await client.hostnames(job.nodeList);
        const byName = new Map((await client.nodes(names)).map((n) => [n.name, n]));
        const nodes = names.map((name) => ({ name, address: byName.get(name)?.address ?? name }));
        log.info('the Slurm allocation runs', { jobId, nodes: job.nodeList, waitedMs: Date.now() - started });
        const endsAt = endsAtOf(job);
        return { jobId, jobName, nodes, adopted, pendingMs: Date.now() - started, pendingReason, endsAt };
      }
      if (job.reason && job.reason !== 'None') pendingReason = job.reason;
      heartbeat({ jobId, state: job.state, reason: pendingReason, waitingSince: started } satisfies WaitDetails);
      await sleepMs(2000, activitySignal());
    }
  }

  /**
   * End the run's allocation: scancel with TERM to every step, the final scancel after the grace, then wait until
   * squeue shows the job ended. Holder jobs found by name are ended too (an allocation submitted by an attempt whose
   * reply was lost).
   */
  async function slurmRelease(input: {
    spec: Spec;
    runKey: string;
    jobId?: string;
    /** end `jobId` only, not other live jobs of the run's name (the guard: a later run of the same id may hold one) */
    onlyThisJob?: boolean;
    why: string;
  }): Promise<{ released: { jobId: string; state: string }[] }> {
    const spec = localSpec(input.spec, deps);
    const ex = slurmExecutor(spec);
    const client = new SlurmClient(ex.slurmConf);
    const ids = new Set<string>(input.jobId ? [input.jobId] : []);
    if (!(input.onlyThisJob && input.jobId))
      for (const job of await client.jobsNamed(holderJobName(input.runKey))) ids.add(job.jobId);
    const graceMs = durationMs(ex.releaseGrace);
    const released = await Promise.all(
      [...ids].map(async (jobId) => {
        heartbeat({ releasing: jobId });
        const state = await client.cancel(jobId, graceMs);
        log.info('released the Slurm allocation', { jobId, state, why: input.why });
        return { jobId, state };
      }),
    );
    return { released };
  }

  /** The run's holder job as Slurm lists it now (the one `slurmAllocate` adopts): its state and why it waits. */
  async function slurmPending(input: {
    spec: Spec;
    runKey: string;
  }): Promise<{ jobId?: string; state?: string; reason?: string }> {
    const ex = slurmExecutor(localSpec(input.spec, deps));
    const client = new SlurmClient(ex.slurmConf);
    const job = ex.jobId ? await client.job(ex.jobId) : (await client.jobsNamed(holderJobName(input.runKey)))[0];
    return job ? { jobId: job.jobId, state: job.state, reason: job.reason } : {};
  }

  /**
   * The run's allocation (the placed spec's job) now: whether it still holds its nodes, and when its time limit ends
   * it. Training reads it after each checkpoint, so that a limit changed by an administrator counts too.
   */
  async function slurmAllocationTime(input: { spec: Spec }): Promise<AllocationTime> {
    const ex = slurmExecutor(localSpec(input.spec, deps));
    if (!ex.jobId) throw ApplicationFailure.nonRetryable('the spec is not placed on an allocation', 'InvalidSpec');
    const job = await new SlurmClient(ex.slurmConf).job(ex.jobId);
    if (job === undefined) return { jobId: ex.jobId, state: 'GONE', live: false };
    const endsAt = endsAtOf(job);
    return { jobId: ex.jobId, state: job.state, live: !isTerminal(job), ...(endsAt ? { endsAt } : {}) };
  }

  return { slurmAllocate, slurmRelease, slurmPending, slurmAllocationTime };
}
