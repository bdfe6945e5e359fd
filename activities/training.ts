// Training activities: submit the Ray job idempotently and stop it; supervising it one checkpoint at a time is in
// supervise.ts, checkpoint retention in retention.ts.
import { log } from '@temporalio/activity';
import { isTerminalStatus, RayJobsClient } from '../src/cluster/ray-jobs.js';
import { readTracker } from '../src/progress/checkpoints.js';
import { trainJob } from '../src/recipe/commands.js';
import type { NodeSpec, Spec } from '../src/spec/schema.js';
import { modelPaths } from '../src/spec/paths.js';
import { executorFor, localSpec, target, type ActivityDeps } from './context.js';
import { durationMs } from '../src/spec/duration.js';
import { dashboardUrlFor, rayLaunchId, type ExtraNode } from './cluster.js';
import { stopJobForSure, type JobStop } from './job-stop.js';
import { retentionActivities } from './retention.js';
import { resolveNodes, supervisionActivities } from './supervise.js';
import { jobSecretFile, placeJobSecrets } from './job-secrets.js';

export type {
  EvalPoint,
  Failure,
  FailureKind,
  RewardPoint,
  SuperviseInput,
  SuperviseOutcome,
  SupervisionCursor,
} from './supervise.js';
export { classifyEndedJob } from './supervise.js';
export type { JobStop } from './job-stop.js';

export function trainingActivities(deps: ActivityDeps) {
  const jobsClient = (spec: Spec, head: NodeSpec) =>
    new RayJobsClient({ url: dashboardUrlFor(spec, head), timeoutMs: 10_000 });

  async function submitTrainingJob(input: {
    spec: Spec;
    runKey: string;
    generation: string;
    activeNodes?: string[];
    extraNodes?: ExtraNode[];
  }): Promise<{ jobId: string; tracker: number; created: boolean }> {
    const spec = localSpec(input.spec, deps);
    const nodes = resolveNodes(spec, input.activeNodes, input.extraNodes);
    const head = nodes[0]!;
    const jobs = jobsClient(spec, head);
    const jobId = `${input.runKey}-train-${input.generation}`;
    // At most one live job per run: anything else of this run still alive is stopped before a new submission.
    for (const job of await jobs.listJobs()) {
      if (job.metadata.keel_run === input.runKey && job.submissionId !== jobId && !isTerminalStatus(job.status)) {
        log.warn('stopping a stale job of this run before submitting', { job: job.submissionId });
        await jobs.stopJob(job.submissionId);
        await jobs
          .waitForStatus(job.submissionId, ['STOPPED', 'FAILED', 'SUCCEEDED'], { timeoutMs: 60_000 })
          .catch(() => undefined);
      }
    }
    const paths = modelPaths(spec);
    const tracker = await readTracker(paths.save).catch(() => undefined);
    // Secrets named by rayHead.secretEnv go to a 0600 file on the head node, written once per submission id.
    const secretFile = jobSecretFile(spec, head, jobId);
    if (secretFile && !(await jobs.getJob(jobId)))
      await placeJobSecrets(spec, head, secretFile, deps.env, deps.allowEnv);
    const job = trainJob(spec, { head, secretFile });
    const { created } = await jobs.submitJob({
      entrypoint: job.entrypoint,
      submissionId: jobId,
      runtimeEnv: { env_vars: { ...spec.cluster.env, ...job.envVars } },
      metadata: { keel_run: input.runKey, keel_generation: String(input.generation) },
    });
    log.info(created ? 'training job submitted' : 'training job already submitted', { jobId, tracker });
    return { jobId, tracker: typeof tracker === 'number' ? tracker : -1, created };
  }

  /**
   * Stop the job until it is stopped (activities/job-stop.ts): asked of the dashboard until Ray reports it ended, then
   * on the head over the executor. Returns what worked; a job that may still run is `not-stopped`, never an error.
   */
  async function stopTrainingJob(input: {
    spec: Spec;
    jobId: string;
    /** the run: its Ray launch on the head is stopped when the dashboard does not stop the job */
    runKey?: string;
    activeNodes?: string[];
    extraNodes?: ExtraNode[];
    /** how long the dashboard is asked before the fallback (default 2 minutes) */
    dashboardDeadlineMs?: number;
  }): Promise<JobStop> {
    const spec = localSpec(input.spec, deps);
    const head = resolveNodes(spec, input.activeNodes, input.extraNodes)[0]!;
    return stopJobForSure({
      jobs: jobsClient(spec, head),
      executor: executorFor(spec),
      head: target(head),
      heartbeatEveryMs: durationMs(spec.policies.heartbeatTimeout) / 3,
      jobId: input.jobId,
      rayLaunchId: input.runKey ? rayLaunchId(input.runKey, head) : undefined,
      dashboardDeadlineMs: input.dashboardDeadlineMs,
    });
  }

  return { submitTrainingJob, stopTrainingJob, ...supervisionActivities(deps), ...retentionActivities(deps) };
}
