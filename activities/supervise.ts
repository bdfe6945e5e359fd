// Supervising a training job until its next checkpoint: follow the job's log (only the bytes it has not read: the
// cost of a poll does not grow with the log), verify the resume, detect node loss and hangs by phase, and classify
// every ending in one place. It heartbeats its cursor; a retried attempt (a worker restarted) resumes from it, and the
// next supervision of the same job starts from the cursor of the last outcome.
import { log } from '@temporalio/activity';
import { RayDashboardClient } from '../src/cluster/ray-dashboard.js';
import { SlurmClient, type SlurmLostNode } from '../src/cluster/slurm.js';
import { defaultRayTempDir, JobLogReader, jobDriverLogPath, type JobLogLocation } from '../src/cluster/job-log.js';
import { isTerminalStatus, RayJobsClient, type RayJob } from '../src/cluster/ray-jobs.js';
import { checkResume, completeIterationsBetween, readTracker } from '../src/progress/checkpoints.js';
import type { SlimeLogSummary } from '../src/progress/slime-log.js';
import { cursorFor, LogProgress, type SupervisionCursor } from '../src/progress/supervision-cursor.js';
import { nodeIp, nodeName } from '../src/recipe/commands.js';
import { durationMs as msToNumber } from '../src/spec/duration.js';
import { modelPaths } from '../src/spec/paths.js';
import type { NodeSpec, Spec } from '../src/spec/schema.js';
import { dashboardUrlFor, rayTempDir, reachable, type ExtraNode } from './cluster.js';
import {
  activitySignal,
  allNodes,
  executorFor,
  heartbeat,
  lastHeartbeat,
  localSpec,
  sleepMs,
  target,
  type ActivityDeps,
} from './context.js';

export type { SupervisionCursor } from '../src/progress/supervision-cursor.js';

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
  /** where the last supervision of this job stopped (its outcome's `cursor`); none: read the job's log from its start */
  cursor?: SupervisionCursor;
}

export interface EvalPoint {
  rollout: number;
  score: number;
}

export interface RewardPoint {
  rollout: number;
  reward: number;
}

type OutcomeBody =
  | {
      kind: 'checkpoint';
      /** the newest checkpoint: the tracker */
      iteration: number;
      /**
       * every complete checkpoint saved since `afterIteration`, oldest first, `iteration` last: more than one when the
       * trainer saved again before a poll saw the first (absent in outcomes recorded before keel 0.3)
       */
      saved?: number[];
    }
  | { kind: 'succeeded' }
  | { kind: 'failed'; failure: Failure };

export type SuperviseOutcome = {
  evals: EvalPoint[];
  /** `rollout/raw_reward` of the rollouts after `afterIteration` (the trainer's `rollout N: {...}` lines) */
  rewards?: RewardPoint[];
  lastRollout?: number;
  firstRolloutAt?: string;
  /** when supervision first saw the job RUNNING (absent: not seen running, or recorded before keel 0.3) */
  jobRunningAt?: string;
  /** pass to the next supervision of the same job */
  cursor: SupervisionCursor;
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

/** Every node the run may use: the spec's nodes and spares, and nodes an operator added. */
export function nodePool(spec: Spec, extra: ExtraNode[] = []): NodeSpec[] {
  return [
    ...allNodes(spec),
    ...extra.map((n) => ({ host: n.host, name: n.name, gpus: n.gpus ?? spec.cluster.gpusPerNode })),
  ];
}

export function resolveNodes(spec: Spec, names: string[] | undefined, extra: ExtraNode[] = []): NodeSpec[] {
  const pool = nodePool(spec, extra);
  if (!names?.length) return spec.cluster.nodes.slice(0, spec.distributed.actorNumNodes);
  return names.map((name) => {
    const node = pool.find((n) => nodeName(n) === name);
    if (!node) throw new Error(`unknown node ${name}`);
    return node;
  });
}

/** Bytes of the job's log read per poll at most; a supervisor behind catches up over several polls without pausing. */
const logBytesPerPoll = 1 << 20;

export function supervisionActivities(deps: ActivityDeps) {
  async function superviseUntilCheckpoint(input: SuperviseInput): Promise<SuperviseOutcome> {
    const spec = localSpec(input.spec, deps);
    const signal = activitySignal();
    const nodes = resolveNodes(spec, input.activeNodes, input.extraNodes);
    const head = nodes[0]!;
    const jobs = new RayJobsClient({ url: dashboardUrlFor(spec, head), timeoutMs: 10_000 });
    const dashboard = new RayDashboardClient({ url: dashboardUrlFor(spec, head), timeoutMs: 5000 });
    const saveDir = modelPaths(spec).save;
    const hang = {
      startup: msToNumber(spec.policies.hang.startup),
      rollout: msToNumber(spec.policies.hang.rollout),
      eval: msToNumber(spec.policies.hang.eval ?? spec.policies.hang.rollout),
      save: msToNumber(spec.policies.hang.checkpointSave),
    };
    const pollMs = Math.min(2000, Math.max(250, msToNumber(spec.policies.heartbeatTimeout) / 5));
    // Two reads further apart than this: the log went unread (a stalled read, a paused process); not a hang.
    const readGapMs = Math.max(15_000, pollMs * 5);
    const after = input.afterIteration ?? -1;

    // Resume where this activity's last attempt heartbeated, else where the last supervision of the job stopped.
    const invalid = (from: string) => (problem: string) =>
      log.warn(`ignoring an invalid cursor (${from})`, { problem });
    const resumed = cursorFor(lastHeartbeat<{ cursor?: unknown }>()?.cursor, input.jobId, invalid('heartbeat'));
    const start = resumed ?? cursorFor(input.cursor, input.jobId, invalid('input'));
    const progress = new LogProgress(input.jobId, start, {
      resumeVerified: input.resumeFrom === undefined,
      now: Date.now(),
      rewardsAfter: after,
    });
    if (start)
      log.info('supervision resumes in the job log', { jobId: input.jobId, offset: start.offset, resumed: !!resumed });

    const reader = new JobLogReader({
      jobs,
      executor: executorFor(spec),
      submissionId: input.jobId,
      maxBytes: logBytesPerPoll,
      locate: (driverNodeId) =>
        locateDriverLog(spec, dashboard, nodePool(spec, input.extraNodes), driverNodeId, input.jobId),
      onFallback: (reason) => log.warn("reading the job log's last lines over HTTP on every poll", { reason }),
    });

    let unreachableSince: number | undefined;
    let logUnreadableSince: number | undefined;
    let lastNodeCheck = 0;
    let pendingCheckpoint: { iteration: number; since: number } | undefined;

    const done = (outcome: OutcomeBody): SuperviseOutcome =>
      ({
        ...outcome,
        evals: progress.evals(),
        rewards: progress.rewards(),
        lastRollout: progress.follower.summary.lastRollout,
        firstRolloutAt:
          progress.firstRolloutAt === undefined ? undefined : new Date(progress.firstRolloutAt).toISOString(),
        jobRunningAt: progress.jobRunningAt === undefined ? undefined : new Date(progress.jobRunningAt).toISOString(),
        cursor: progress.cursor(outcome.kind === 'checkpoint' ? outcome.iteration : Number.MAX_SAFE_INTEGER),
      }) as SuperviseOutcome;
    const failure = async (f: Failure): Promise<Failure> => {
      const tracker = await readTracker(saveDir).catch(() => undefined);
      return {
        ...f,
        lastRollout: progress.follower.summary.lastRollout,
        tracker: typeof tracker === 'number' ? tracker : -1,
        detectedAt: new Date().toISOString(),
        lastProgressAt: new Date(progress.lastProgressAt).toISOString(),
      };
    };
    // The head among the lost nodes: the cluster needs a new head, not only a replacement worker.
    const lostKind = (dead: string[]): FailureKind => (dead.includes(nodeName(head)) ? 'head-lost' : 'node-lost');
    const failed = async (kind: FailureKind, message: string) =>
      done({ kind: 'failed', failure: await failure({ kind, message }) });

    // A request to the head, a read of the log or a check of the nodes waits up to its own timeout (60 s for the log's
    // last lines over HTTP), longer than a short heartbeat timeout: the worker is alive meanwhile, so it heartbeats
    // where it stands.
    let beat: { jobId: string; status?: string; logReadVia?: string } = { jobId: input.jobId };
    const beatWhile = <T>(work: Promise<T>): Promise<T> => {
      const timer = setInterval(() => heartbeat({ ...beat, cursor: progress.cursor() }), pollMs);
      return work.finally(() => clearInterval(timer));
    };
    // The log went unread until now (it could not be read, or the head did not answer): not the trainer's idle time.
    const unread = () => {
      const now = Date.now();
      progress.skipGap(progress.readAt ?? now, now);
      progress.readAt = now;
    };

    for (;;) {
      let job: RayJob | undefined;
      let caughtUp = true;
      let via: 'file' | 'http' | undefined;
      try {
        job = await beatWhile(jobs.getJob(input.jobId, signal));
        if (job?.status === 'RUNNING') progress.jobRunningAt ??= Date.now();
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
        unread();
      }
      // The head answered: a log read that fails or is slow is only a read to try again (never a head loss, and the
      // time it costs is not idle time of the trainer).
      if (unreachableSince === undefined)
        try {
          const chunk = await beatWhile(reader.read(job, progress.offset, signal, progress.tail));
          const readAt = Date.now();
          if (progress.readAt !== undefined && readAt - progress.readAt > readGapMs)
            progress.skipGap(progress.readAt, readAt);
          if (chunk.restarted)
            log.warn('the job log is shorter than the cursor: reading it from its start', { jobId: input.jobId });
          progress.push(chunk.text, chunk.nextOffset, readAt, chunk.restarted);
          caughtUp = chunk.via === 'http' || chunk.bytesRead < logBytesPerPoll;
          via = chunk.via;
          logUnreadableSince = undefined;
        } catch (error) {
          if (signal?.aborted) throw error;
          caughtUp = false;
          logUnreadableSince ??= Date.now();
          log.warn('the job log could not be read this poll; reading it again', {
            jobId: input.jobId,
            since: new Date(logUnreadableSince).toISOString(),
            error: (error as Error).message,
          });
          unread();
        }
      const summary = progress.follower.summary;
      beat = { jobId: input.jobId, status: job?.status, logReadVia: via };
      heartbeat({ ...beat, cursor: progress.cursor() });

      // Verified resume: the first rollout logged after a (re)submission must be tracker + 1, with its data state.
      if (!progress.resumeVerified && summary.firstRollout !== undefined) {
        const tracker = input.resumeFrom !== undefined && input.resumeFrom >= 0 ? input.resumeFrom : undefined;
        const check = await checkResume(saveDir, tracker, summary.firstRollout);
        if (!check.ok) return failed('resume-mismatch', `resume check failed: ${check.reason}`);
        progress.resumeVerified = true;
      }

      // A new checkpoint named by the tracker: return once its eval (if one is due) has been logged.
      const jobEnded = job !== undefined && isTerminalStatus(job.status) && caughtUp;
      const tracker = await readTracker(saveDir).catch(() => undefined);
      if (typeof tracker === 'number' && tracker > after) {
        const evalDue = (tracker + 1) % spec.eval.evalInterval === 0;
        pendingCheckpoint ??= { iteration: tracker, since: Date.now() };
        const evalLogged = summary.evals[tracker] !== undefined;
        if (!evalDue || evalLogged || jobEnded || Date.now() - pendingCheckpoint.since > hang.eval) {
          const saved = await completeIterationsBetween(saveDir, after, tracker);
          return done({ kind: 'checkpoint', iteration: tracker, saved });
        }
      }

      // An ended job is judged once its whole log has been read.
      if (job && jobEnded) {
        progress.follower.end();
        const ended = progress.follower.summary;
        if (job.status === 'SUCCEEDED') {
          if (ended.firstRollout === undefined && (input.resumeFrom ?? -1) + 1 < spec.rollout.numRollout) {
            return failed(
              'resume-mismatch',
              'the job exited 0 without logging a rollout (a resume that trained nothing)',
            );
          }
          return done({ kind: 'succeeded' });
        }
        const slurmLost = await lostInSlurm(spec, nodes);
        if (slurmLost.length)
          return failed(
            lostKind(slurmLost.map((n) => n.name)),
            `${slurmSays(slurmLost)}; the job ${job.status.toLowerCase()}`,
          );
        // an ended job's nodes are probed on Slurm too: its slurmd may be gone before Slurm says the node is DOWN
        const dead = await deadNodes(spec, dashboard, nodes, true);
        if (dead.length)
          return failed(lostKind(dead), `node(s) ${dead.join(', ')} lost; the job ${job.status.toLowerCase()}`);
        const tail = await reader
          .read(job, Math.max(0, progress.offset - 8000))
          .then((chunk) => chunk.text)
          // over HTTP (no byte ranges there): the log's last lines
          .catch(() => jobs.tailLogs(input.jobId, 200))
          .catch(() => '');
        return done({ kind: 'failed', failure: await failure(classifyEndedJob(job, ended, tail)) });
      }

      // Node liveness from the dashboard: do not wait for an NCCL timeout to notice a dead node.
      if (Date.now() - lastNodeCheck > 10_000 && unreachableSince === undefined) {
        lastNodeCheck = Date.now();
        // On Slurm, Slurm's own judgement first: a node it marked DOWN or drained, or dropped from the allocation.
        const slurmLost = await beatWhile(lostInSlurm(spec, nodes));
        if (slurmLost.length) return failed(lostKind(slurmLost.map((n) => n.name)), slurmSays(slurmLost));
        // On Slurm, Slurm's node states stand for the probe of every node: a node whose slurmd does not answer while
        // its programs run is Slurm's to judge (DOWN after its SlurmdTimeout), and a probe of every node every 10 s
        // would be one job step each (MaxStepCount).
        const dead = await beatWhile(deadNodes(spec, dashboard, nodes, spec.cluster.executor.kind !== 'slurm'));
        if (dead.length) return failed(lostKind(dead), `node(s) ${dead.join(', ')} no longer alive in Ray`);
      }

      // Hangs, by phase, judged only on a log read to its end (a backlog being caught up is not idle time).
      const idle = Date.now() - progress.lastProgressAt;
      const phase = trainerPhase(summary, spec.eval.evalInterval);
      if (caughtUp && idle > hang[phase]) {
        return failed(
          'hang',
          `no progress for ${Math.round(idle / 1000)} s in the ${phase === 'save' ? 'checkpoint save' : phase} phase (timeout ${Math.round(hang[phase] / 1000)} s)`,
        );
      }
      // a log that could not be read is read again at the next poll, not at once (the dashboard is not hammered)
      if (caughtUp || logUnreadableSince !== undefined) await sleepMs(pollMs, signal);
    }
  }

  return { superviseUntilCheckpoint };
}

/**
 * The phase the trainer is in, as its log shows it (slime's train loop: the eval before rollout 0, then per rollout
 * generation, training, a save when due, the weight update, and an eval when (rollout + 1) % evalInterval is 0):
 * start-up until the first rollout line, a save between its two lines, an eval after a rollout whose eval is due and
 * not logged yet, else a rollout.
 */
export function trainerPhase(
  summary: SlimeLogSummary,
  evalInterval: number | undefined,
): 'startup' | 'save' | 'eval' | 'rollout' {
  if (summary.checkpointInProgress) return 'save';
  const last = summary.lastRollout;
  if (last === undefined) return 'startup';
  const evalDue = evalInterval !== undefined && evalInterval > 0 && (last + 1) % evalInterval === 0;
  return evalDue && summary.evals[last] === undefined ? 'eval' : 'rollout';
}

/** The driver's log file: on the run's node that Ray names as the driver's, under that node's Ray temp dir. */
async function locateDriverLog(
  spec: Spec,
  dashboard: RayDashboardClient,
  pool: NodeSpec[],
  driverNodeId: string,
  submissionId: string,
): Promise<JobLogLocation | undefined> {
  const rayNode = (await dashboard.listNodes()).find((n) => n.nodeId === driverNodeId);
  const node = rayNode && pool.find((n) => nodeIp(n) === rayNode.nodeIp);
  if (!node) return undefined;
  const tempDir = spec.rayHead.isolateNodes ? rayTempDir(spec, node) : defaultRayTempDir(spec.cluster.env);
  return { node: target(node), path: jobDriverLogPath(tempDir, submissionId) };
}

/** The job's nodes that Slurm has taken from the allocation (none for other executors, or when Slurm does not answer). */
async function lostInSlurm(spec: Spec, nodes: NodeSpec[]): Promise<SlurmLostNode[]> {
  const ex = spec.cluster.executor;
  if (ex.kind !== 'slurm' || ex.jobId === undefined) return [];
  try {
    const byName = new Map(nodes.map((n) => [nodeName(n), n]));
    const lost = await new SlurmClient(ex.slurmConf).lostNodes(ex.jobId, [...byName.keys()]);
    // named as keel names the node (its name, which is Slurm's)
    return lost.filter((n) => byName.has(n.name));
  } catch (error) {
    log.warn('could not ask Slurm about the nodes', { error: String(error) });
    return [];
  }
}

function slurmSays(lost: SlurmLostNode[]): string {
  return `Slurm: ${lost.map((n) => `${n.name} ${n.why}`).join('; ')}`;
}

/**
 * Nodes Ray declares dead, and, with `probe`, nodes the executor cannot reach (Ray notices a lost node only after a
 * while).
 */
async function deadNodes(
  spec: Spec,
  dashboard: RayDashboardClient,
  nodes: NodeSpec[],
  probe: boolean,
): Promise<string[]> {
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
  if (!probe) return [...dead];
  const answers = await Promise.all(nodes.map((n) => reachable(spec, n)));
  nodes.forEach((n, i) => {
    if (!answers[i]) dead.add(nodeName(n));
  });
  return [...dead];
}
