// Stopping a training job so that it is stopped: on every final exit and before every restart. The dashboard is asked
// until Ray reports the job ended (a refused or lost request is asked again, backing off); when it has not within the
// deadline, the job is stopped on the head over the executor -- its driver's processes killed, and the Ray keel
// launched there stopped. The outcome says which of these worked, or that none did: training records it in its state
// (`keel status`, the final record) and tells the run's webhooks when the job may still run.
import { log } from '@temporalio/activity';
import {
  isTerminalStatus,
  terminalJobStatuses,
  type RayJobStatus,
  type RayJobsClient,
} from '../src/cluster/ray-jobs.js';
import { stopJobDriverScript } from '../src/cluster/job-driver.js';
import { UnknownProcessError } from '../src/exec/errors.js';
import { nodeName, type Executor, type NodeTarget } from '../src/exec/index.js';
import { activitySignal, sleepMs, withHeartbeats } from './context.js';

export interface JobStop {
  jobId: string;
  /**
   * stopped: Ray reports the job ended after keel asked; ended: it had ended before; gone: Ray has no such job (a new
   * head); stopped-on-head: the dashboard did not stop it in time, so keel stopped it on the head over the executor;
   * head-gone: the head answers neither its dashboard nor the executor (the driver ran there; Ray's workers end their
   * tasks when their head is gone); not-stopped: the head answers, and none of this worked -- the job may still run.
   */
  how: 'stopped' | 'ended' | 'gone' | 'stopped-on-head' | 'head-gone' | 'not-stopped';
  /** Ray's last status of the job, when the dashboard answered */
  status?: RayJobStatus;
  /** what was tried, in keel's words */
  detail: string;
  at: string;
}

export interface StopJobOptions {
  jobs: RayJobsClient;
  /** the executor that reaches the head, and the head */
  executor: Executor;
  head: NodeTarget;
  /** heartbeat this often while stopping */
  heartbeatEveryMs: number;
  jobId: string;
  /** keel's Ray launch on the head (stopped in the fallback), when the run launched one there */
  rayLaunchId?: string;
  /** how long the dashboard is asked before the fallback; default 2 minutes */
  dashboardDeadlineMs?: number;
}

const defaultDashboardDeadlineMs = 120_000;
const driverGraceMs = 5000;

/** Stop the job until Ray says it ended, else on the head; heartbeats throughout. Never throws for a refused stop. */
export async function stopJobForSure(options: StopJobOptions): Promise<JobStop> {
  return withHeartbeats(options.heartbeatEveryMs, `stopping job ${options.jobId}`, async () => {
    const asked = await askDashboard(options);
    if ('how' in asked) return { jobId: options.jobId, at: new Date().toISOString(), ...asked };
    return { jobId: options.jobId, at: new Date().toISOString(), ...(await stopOnHead(options, asked.error)) };
  });
}

type Outcome = Pick<JobStop, 'how' | 'status' | 'detail'>;

/** Ask the dashboard until Ray reports the job in a terminal status, or the deadline passes. */
async function askDashboard(options: StopJobOptions): Promise<Outcome | { error: string; status?: RayJobStatus }> {
  const { jobs, jobId } = options;
  const deadline = Date.now() + (options.dashboardDeadlineMs ?? defaultDashboardDeadlineMs);
  const signal = activitySignal();
  let requests = 0;
  let error = '';
  let status: RayJobStatus | undefined;
  for (let pause = 500; ; pause = Math.min(pause * 2, 10_000)) {
    try {
      const job = await jobs.getJob(jobId, signal);
      if (!job) return { how: 'gone', detail: `Ray has no job ${jobId} (its head was started again): nothing to stop` };
      status = job.status;
      if (isTerminalStatus(job.status)) {
        return requests === 0
          ? { how: 'ended', status: job.status, detail: `the job had ended ${job.status}` }
          : { how: 'stopped', status: job.status, detail: stoppedAfter(requests, job.status) };
      }
      requests++;
      await jobs.stopJob(jobId, signal);
      const left = Math.max(1000, Math.min(30_000, deadline - Date.now()));
      const ended = await jobs.waitForStatus(jobId, terminalJobStatuses, { timeoutMs: left, signal });
      return { how: 'stopped', status: ended.status, detail: stoppedAfter(requests, ended.status) };
    } catch (e) {
      if (signal?.aborted) throw e;
      error = (e as Error).message.split('\n')[0] ?? String(e);
      log.warn('the dashboard did not stop the job; asking again', { jobId, requests, error });
      // a head that answers nothing (a lost head): no use asking its dashboard for minutes
      if (requests === 0 && !(await headAnswers(options)))
        return { error: `${error}; the head does not answer`, status };
    }
    if (Date.now() + pause >= deadline) return { error, status };
    await sleepMs(pause, signal);
  }
}

function stoppedAfter(requests: number, status: RayJobStatus): string {
  return `Ray reports the job ${status} after ${requests} stop request(s)`;
}

/** The fallback: kill the job's driver processes on the head, and stop keel's Ray there. */
async function stopOnHead(options: StopJobOptions, dashboardError: string): Promise<Outcome> {
  const { executor, head: node, jobId } = options;
  const head = nodeName(node);
  const done: string[] = [];
  const failed: string[] = [];
  const why = `the dashboard did not stop the job within ${Math.round((options.dashboardDeadlineMs ?? defaultDashboardDeadlineMs) / 1000)} s (${dashboardError})`;
  try {
    const r = await executor.run(
      node,
      ['sh', '-c', stopJobDriverScript, 'keel-stop-driver', jobId, String(driverGraceMs / 100)],
      { timeoutMs: driverGraceMs + 30_000 },
    );
    if (r.exitCode !== 0) failed.push(`killing the driver failed: ${r.stderr.trim().split('\n')[0] ?? ''}`);
    else if (Number(r.stdout.trim()) > 0) done.push(`its driver's processes were killed on ${head}`);
    else failed.push(`no driver process of the job on ${head}`);
  } catch (e) {
    failed.push(`${head} did not answer: ${(e as Error).message.split('\n')[0] ?? ''}`);
  }
  if (!done.length && !(await headAnswers(options))) {
    log.warn('the head answers neither its dashboard nor the executor', { jobId, failed });
    return {
      how: 'head-gone',
      detail: `${why}; ${head} does not answer over the executor either: the job's driver ran there, and Ray's workers end their tasks when their head is gone`,
    };
  }
  if (options.rayLaunchId) {
    try {
      await executor.stop(node, options.rayLaunchId, { graceMs: 10_000 });
      done.push(`keel's Ray on ${head} was stopped`);
    } catch (e) {
      if (!(e instanceof UnknownProcessError))
        failed.push(`stopping Ray on ${head} failed: ${(e as Error).message.split('\n')[0] ?? ''}`);
    }
  }
  if (done.length) {
    log.warn('the job was stopped on the head', { jobId, done, failed });
    return { how: 'stopped-on-head', detail: `${why}; ${done.join('; ')}` };
  }
  log.error('the job could not be stopped: it may still run', { jobId, failed });
  return {
    how: 'not-stopped',
    detail: `${why}; ${failed.join('; ') || 'nothing to stop on the head'}. The job may still hold its GPUs: stop it by hand (ray job stop ${jobId}, or ray stop on ${head})`,
  };
}

/** Whether the head runs a command over the executor (within 15 s). */
async function headAnswers(options: StopJobOptions): Promise<boolean> {
  try {
    return (await options.executor.run(options.head, ['true'], { timeoutMs: 15_000 })).exitCode === 0;
  } catch {
    return false;
  }
}
