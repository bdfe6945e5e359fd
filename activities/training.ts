// Training activities: submit the Ray job idempotently, supervise it one checkpoint at a time (classifying every
// failure in one place), stop it; checkpoint retention is in retention.ts.
import { log } from '@temporalio/activity';
import { durationMs as msToNumber } from '../src/spec/duration.js';
import { RayDashboardClient } from '../src/cluster/ray-dashboard.js';
import { isTerminalStatus, RayJobsClient, type RayJob } from '../src/cluster/ray-jobs.js';
import { checkResume, readTracker } from '../src/progress/checkpoints.js';
import { SlimeLogFollower, type SlimeLogSummary } from '../src/progress/slime-log.js';
import { nodeIp, nodeName, trainJob } from '../src/recipe/commands.js';
import type { NodeSpec, Spec } from '../src/spec/schema.js';
import { modelPaths } from '../src/spec/paths.js';
import { activitySignal, allNodes, heartbeat, localSpec, sleepMs, type ActivityDeps } from './context.js';
import { dashboardUrlFor, reachable, type ExtraNode } from './cluster.js';
import { retentionActivities } from './retention.js';

export type FailureKind = 'config-error' | 'node-lost' | 'head-lost' | 'hang' | 'job-crashed' | 'resume-mismatch';

export interface Failure {
  kind: FailureKind;
  message: string;
  /** the last rollout logged and the checkpoint training will resume from: rollouts lost = lastRollout - tracker */
  lastRollout?: number;
  tracker?: number;
  /** when the failure was detected, and when the last progress was seen (detection latency) */
  detectedAt?: string;
  lastProgressAt?: string;
}

export interface SuperviseInput {
  spec: Spec;
  runKey: string;
  jobId: string;
  /** the last checkpoint the workflow has recorded */
  afterIteration?: number;
  /** set on the first supervision after a (re)submission: the tracker the job resumes from (-1: none) */
  resumeFrom?: number;
  activeNodes?: string[];
  extraNodes?: ExtraNode[];
}

export interface EvalPoint {
  rollout: number;
  score: number;
}

type OutcomeBody =
  { kind: 'checkpoint'; iteration: number } | { kind: 'succeeded' } | { kind: 'failed'; failure: Failure };

export interface RewardPoint {
  rollout: number;
  reward: number;
}

export type SuperviseOutcome = {
  evals: EvalPoint[];
  /** `rollout/raw_reward` of the rollouts after `afterIteration` (the trainer's `rollout N: {...}` lines) */
  rewards?: RewardPoint[];
  lastRollout?: number;
  firstRolloutAt?: string;
} & OutcomeBody;

/** Lines that mean the trainer rejected its arguments or configuration: restarting cannot help. */
const configErrorPattern =
  /(error: unrecognized arguments|error: argument|error: the following arguments are required|invalid choice|ArgumentError|ArgumentTypeError)/;

export function classifyEndedJob(job: RayJob, summary: SlimeLogSummary, logTail: string): Failure {
  const errorLine = summary.lastError ? `${summary.lastError.errorType}: ${summary.lastError.message}` : undefined;
  const neverTrained = summary.firstRollout === undefined;
  const argparse = configErrorPattern.exec(logTail);
  if (neverTrained && (argparse || job.driverExitCode === 2)) {
    const line = logTail
      .split('\n')
      .reverse()
      .find((l) => configErrorPattern.test(l));
    return {
      kind: 'config-error',
      message: `the trainer rejected its arguments: ${line?.trim() ?? errorLine ?? job.message}`,
    };
  }
  return {
    kind: 'job-crashed',
    message: `job ${job.submissionId} ${job.status.toLowerCase()}${job.driverExitCode !== undefined ? ` (exit ${job.driverExitCode})` : ''}: ${errorLine ?? job.message ?? 'no error line'}`,
  };
}

function resolveNodes(spec: Spec, names: string[] | undefined, extra: ExtraNode[] = []): NodeSpec[] {
  const pool: NodeSpec[] = [
    ...allNodes(spec),
    ...extra.map((n) => ({ host: n.host, name: n.name, gpus: n.gpus ?? spec.cluster.gpusPerNode })),
  ];
  if (!names?.length) return spec.cluster.nodes.slice(0, spec.distributed.actorNumNodes);
  return names.map((name) => {
    const node = pool.find((n) => nodeName(n) === name);
    if (!node) throw new Error(`unknown node ${name}`);
    return node;
  });
}

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
    const job = trainJob(spec, { head });
    const { created } = await jobs.submitJob({
      entrypoint: job.entrypoint,
      submissionId: jobId,
      runtimeEnv: { env_vars: { ...spec.cluster.env, ...job.envVars } },
      metadata: { keel_run: input.runKey, keel_generation: String(input.generation) },
    });
    log.info(created ? 'training job submitted' : 'training job already submitted', { jobId, tracker });
    return { jobId, tracker: typeof tracker === 'number' ? tracker : -1, created };
  }

  async function stopTrainingJob(input: {
    spec: Spec;
    jobId: string;
    activeNodes?: string[];
    extraNodes?: ExtraNode[];
  }): Promise<void> {
    const spec = localSpec(input.spec, deps);
    const head = resolveNodes(spec, input.activeNodes, input.extraNodes)[0]!;
    const jobs = jobsClient(spec, head);
    try {
      await jobs.stopJob(input.jobId);
      await jobs.waitForStatus(input.jobId, ['STOPPED', 'FAILED', 'SUCCEEDED'], { timeoutMs: 60_000 });
    } catch (error) {
      // The head (and so the job) is gone, or the job already ended.
      log.info('stop: job not reachable or already ended', { jobId: input.jobId, error: (error as Error).message });
    }
  }

  async function superviseUntilCheckpoint(input: SuperviseInput): Promise<SuperviseOutcome> {
    const spec = localSpec(input.spec, deps);
    const signal = activitySignal();
    const nodes = resolveNodes(spec, input.activeNodes, input.extraNodes);
    const head = nodes[0]!;
    const jobs = jobsClient(spec, head);
    const dashboard = new RayDashboardClient({ url: dashboardUrlFor(spec, head), timeoutMs: 5000 });
    const saveDir = modelPaths(spec).save;
    const rewards = new Map<number, number>();
    const follower = new SlimeLogFollower({
      onEvent: (event) => {
        if (event.type !== 'rollout-stats') return;
        const reward = event.metrics['rollout/raw_reward'];
        if (reward !== undefined && !Number.isNaN(reward)) rewards.set(event.rollout, reward);
      },
    });
    const hang = {
      startup: msToNumber(spec.policies.hang.startup),
      rollout: msToNumber(spec.policies.hang.rollout),
      save: msToNumber(spec.policies.hang.checkpointSave),
    };
    const pollMs = Math.min(2000, Math.max(250, msToNumber(spec.policies.heartbeatTimeout) / 5));
    const after = input.afterIteration ?? -1;
    let offset = 0;
    let lastProgressAt = Date.now();
    let lastRolloutSeen: number | undefined;
    let resumeVerified = input.resumeFrom === undefined;
    let unreachableSince: number | undefined;
    let lastNodeCheck = 0;
    let pendingCheckpoint: { iteration: number; since: number } | undefined;
    let firstRolloutAt: number | undefined;

    const evals = (): EvalPoint[] =>
      Object.entries(follower.summary.evals)
        .filter(([, e]) => typeof e.score === 'number' && !Number.isNaN(e.score))
        .map(([rollout, e]) => ({ rollout: Number(rollout), score: e.score! }));
    const done = (outcome: OutcomeBody): SuperviseOutcome =>
      ({
        ...outcome,
        evals: evals(),
        rewards: [...rewards].filter(([rollout]) => rollout > after).map(([rollout, reward]) => ({ rollout, reward })),
        lastRollout: follower.summary.lastRollout,
        firstRolloutAt: firstRolloutAt === undefined ? undefined : new Date(firstRolloutAt).toISOString(),
      }) as SuperviseOutcome;
    const failure = async (f: Failure): Promise<Failure> => {
      const tracker = await readTracker(saveDir).catch(() => undefined);
      return {
        ...f,
        lastRollout: follower.summary.lastRollout,
        tracker: typeof tracker === 'number' ? tracker : -1,
        detectedAt: new Date().toISOString(),
        lastProgressAt: new Date(lastProgressAt).toISOString(),
      };
    };
    // The head among the lost nodes: the cluster needs a new head, not only a replacement worker.
    const lostKind = (dead: string[]): FailureKind => (dead.includes(nodeName(head)) ? 'head-lost' : 'node-lost');
    const failed = async (kind: FailureKind, message: string) =>
      done({ kind: 'failed', failure: await failure({ kind, message }) });

    for (;;) {
      let job: RayJob | undefined;
      try {
        job = await jobs.getJob(input.jobId, signal);
        const logs = await jobs.getLogs(input.jobId, offset, signal);
        offset = logs.nextOffset;
        follower.push(logs.text);
        unreachableSince = undefined;
      } catch (error) {
        if (signal?.aborted) throw error;
        unreachableSince ??= Date.now();
        if (Date.now() - unreachableSince > Math.max(15_000, pollMs * 5)) {
          const headUp = await reachable(spec, head);
          return failed(
            'head-lost',
            `the Ray head ${nodeName(head)} ${headUp ? 'answers but its dashboard does not' : 'is unreachable'}: ${(error as Error).message}`,
          );
        }
      }
      const summary = follower.summary;
      if (summary.lastRollout !== lastRolloutSeen || summary.checkpointInProgress) {
        if (summary.lastRollout !== lastRolloutSeen) lastProgressAt = Date.now();
        if (summary.lastRollout !== undefined) firstRolloutAt ??= Date.now();
        lastRolloutSeen = summary.lastRollout;
      }
      heartbeat({ jobId: input.jobId, offset, lastRollout: summary.lastRollout, status: job?.status });

      // Verified resume: the first rollout logged after a (re)submission must be tracker + 1, with its data state.
      if (!resumeVerified && summary.firstRollout !== undefined) {
        const tracker = input.resumeFrom !== undefined && input.resumeFrom >= 0 ? input.resumeFrom : undefined;
        const check = await checkResume(saveDir, tracker, summary.firstRollout);
        if (!check.ok) return failed('resume-mismatch', `resume check failed: ${check.reason}`);
        resumeVerified = true;
      }

      // A new checkpoint named by the tracker: return once its eval (if one is due) has been logged.
      const tracker = await readTracker(saveDir).catch(() => undefined);
      if (typeof tracker === 'number' && tracker > after) {
        const evalDue = (tracker + 1) % spec.eval.evalInterval === 0;
        pendingCheckpoint ??= { iteration: tracker, since: Date.now() };
        const evalLogged = summary.evals[tracker] !== undefined;
        const jobEnded = job !== undefined && isTerminalStatus(job.status);
        if (!evalDue || evalLogged || jobEnded || Date.now() - pendingCheckpoint.since > hang.rollout) {
          return done({ kind: 'checkpoint', iteration: tracker });
        }
      }

      if (job && isTerminalStatus(job.status)) {
        follower.end();
        if (job.status === 'SUCCEEDED') {
          if (summary.firstRollout === undefined && (input.resumeFrom ?? -1) + 1 < spec.rollout.numRollout) {
            return failed(
              'resume-mismatch',
              'the job exited 0 without logging a rollout (a resume that trained nothing)',
            );
          }
          return done({ kind: 'succeeded' });
        }
        const dead = await deadNodes(spec, dashboard, nodes);
        if (dead.length)
          return failed(lostKind(dead), `node(s) ${dead.join(', ')} lost; the job ${job.status.toLowerCase()}`);
        const tail = (await jobs.getLogs(input.jobId, Math.max(0, offset - 8000)).catch(() => ({ text: '' }))).text;
        return done({ kind: 'failed', failure: await failure(classifyEndedJob(job, summary, tail)) });
      }

      // Node liveness from the dashboard: do not wait for an NCCL timeout to notice a dead node.
      if (Date.now() - lastNodeCheck > 10_000 && unreachableSince === undefined) {
        lastNodeCheck = Date.now();
        const dead = await deadNodes(spec, dashboard, nodes);
        if (dead.length) return failed(lostKind(dead), `node(s) ${dead.join(', ')} no longer alive in Ray`);
      }

      // Hangs, by phase: start-up (no rollout yet), steady rollouts, checkpoint saving.
      const idle = Date.now() - lastProgressAt;
      const phase = summary.checkpointInProgress ? 'save' : summary.lastRollout === undefined ? 'startup' : 'rollout';
      if (idle > hang[phase]) {
        return failed(
          'hang',
          `no progress for ${Math.round(idle / 1000)} s in the ${phase === 'save' ? 'checkpoint save' : phase} phase (timeout ${Math.round(hang[phase] / 1000)} s)`,
        );
      }
      await sleepMs(pollMs, signal);
    }
  }

  /** Nodes Ray declares dead, and nodes the executor cannot reach (Ray notices a lost node only after a while). */
  async function deadNodes(spec: Spec, dashboard: RayDashboardClient, nodes: NodeSpec[]): Promise<string[]> {
    const dead = new Set<string>();
    try {
      const all = await dashboard.listNodes();
      for (const n of nodes) {
        const entries = all.filter((x) => x.nodeIp === nodeIp(n));
        if (entries.length > 0 && !entries.some((x) => x.alive)) dead.add(nodeName(n));
      }
    } catch {
      // the dashboard is the head's: its loss is classified as head-lost elsewhere
    }
    const answers = await Promise.all(nodes.map((n) => reachable(spec, n)));
    nodes.forEach((n, i) => {
      if (!answers[i]) dead.add(nodeName(n));
    });
    return [...dead];
  }

  return { submitTrainingJob, stopTrainingJob, superviseUntilCheckpoint, ...retentionActivities(deps) };
}
