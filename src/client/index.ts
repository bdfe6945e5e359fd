// KeelClient: start runs, read their status, steer them. The spec is validated here (at the edge) and again by the
// workflow; the run's workflow id is `keel-<spec name>`, and a second live run of the same name is refused.
import {
  Client,
  Connection,
  ScheduleOverlapPolicy,
  WorkflowIdConflictPolicy,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type WorkflowHandle,
} from '@temporalio/client';
import { resolveSpecInput, formatProblems, InvalidSpecError, type Spec } from '../spec/index.js';
import type { TemporalSection } from '../spec/schema.js';
import { keelPhase, keelPreset } from '../search-attributes.js';
import {
  cancelSignal,
  cancelUpdate,
  pauseSignal,
  pauseUpdate,
  resumeSignal,
  resumeUpdate,
  stopAfterCheckpointSignal,
  stopAfterCheckpointUpdate,
  statusQuery,
  type AllocationStatus,
  type PipelineStatus,
  type SteeringAnswer,
  type TrainingStatus,
} from '../../workflows/definitions.js';
import type { SignalDefinition, UpdateDefinition } from '@temporalio/common';
import { connectionOptions, temporalTarget, type TemporalTarget } from './connection.js';
import { executionsOf, readExecution, workerPolls, type RecordSource } from './record.js';

export {
  connectionOptions,
  describeTarget,
  temporalTarget,
  TemporalConfigError,
  type TemporalTarget,
} from './connection.js';
export type { SteeringAnswer } from '../../workflows/definitions.js';

export class SteeringRefusedError extends Error {
  constructor(
    readonly workflowId: string,
    readonly action: string,
    readonly reason: string,
  ) {
    super(`${action} refused by ${workflowId}: ${reason.replace(/^Workflow Update failed: /, '')}`);
    this.name = 'SteeringRefusedError';
  }
}

export class RunAlreadyLiveError extends Error {
  constructor(readonly workflowId: string) {
    super(`a run named ${workflowId} is already live: watch it (keel watch ${workflowId}) or cancel it first`);
    this.name = 'RunAlreadyLiveError';
  }
}

export interface RunStatus {
  workflowId: string;
  /** the execution this status is of (a run name has one per start: re-runs, continuations) */
  runId?: string;
  runStatus: string;
  startTime?: Date;
  pipeline?: PipelineStatus;
  training?: TrainingStatus;
  result?: unknown;
  failure?: string;
  /** read from a worker's answers to queries, or from the run's history with no worker (src/client/record.ts) */
  source?: RecordSource;
  /** what history could not give */
  partial?: string;
  /** whether a worker polled the task queue when the status was read */
  workerPolling?: boolean;
}

export type ProgressEvent =
  | { type: 'status'; status: RunStatus }
  | { type: 'step'; step: string; state: string; reason?: string }
  | { type: 'checkpoint'; iteration: number; evalScore?: number }
  | { type: 'rollout'; rollout: number; numRollout: number }
  | { type: 'ended'; status: RunStatus };

export function workflowIdFor(spec: Pick<Spec, 'name'>): string {
  return `keel-${spec.name}`;
}

export class KeelClient {
  private constructor(
    readonly client: Client,
    private readonly connection: Connection,
    readonly target: TemporalTarget,
  ) {}

  /**
   * Connect: each field from `target` (e.g. CLI flags), else the env (KEEL_TEMPORAL_*), else `spec` (a spec's `temporal`
   * section), else the local dev server.
   */
  static async connect(target: Partial<TemporalTarget> = {}, spec?: TemporalSection): Promise<KeelClient> {
    const resolved = temporalTarget(target, process.env, spec);
    const connection = await Connection.connect(await connectionOptions(resolved));
    return new KeelClient(new Client({ connection, namespace: resolved.namespace }), connection, resolved);
  }

  async close(): Promise<void> {
    await this.connection.close();
  }

  get schedules(): KeelSchedules {
    return new KeelSchedules(this.client, this.target.taskQueue);
  }

  /** Start the pipeline for a full spec or `{ preset, overrides }`; returns the workflow id. */
  async start(input: unknown, options: { workflowId?: string } = {}): Promise<{ workflowId: string; spec: Spec }> {
    const resolved = resolveSpecInput(input);
    if (!resolved.ok) throw new InvalidSpecError(resolved.problems);
    const spec = resolved.spec;
    const workflowId = options.workflowId ?? workflowIdFor(spec);
    try {
      await this.client.workflow.start('pipeline', {
        taskQueue: this.target.taskQueue,
        workflowId,
        args: [spec],
        workflowIdConflictPolicy: WorkflowIdConflictPolicy.FAIL,
        // what the Web UI shows at the top of the run's page
        staticSummary: runSummary(spec),
        typedSearchAttributes: [
          { key: keelPreset, value: spec.preset ?? 'custom' },
          { key: keelPhase, value: 'starting' },
        ],
      });
    } catch (error) {
      if (error instanceof WorkflowExecutionAlreadyStartedError) throw new RunAlreadyLiveError(workflowId);
      throw error;
    }
    return { workflowId, spec };
  }

  /**
   * The run's status: its newest execution (or `runId`'s), read from a worker's answers while one polls the task queue,
   * else from the run's history (`source` says which; `partial` what history could not give).
   */
  async status(workflowId: string, options: { runId?: string; live?: boolean } = {}): Promise<RunStatus> {
    const live = options.live ?? (await workerPolls(this.client, this.target.taskQueue));
    const record = await readExecution(this.client, workflowId, { runId: options.runId, live });
    const handle = this.client.workflow.getHandle(workflowId, record.runId);
    const status: RunStatus = {
      workflowId,
      runId: record.runId,
      runStatus: record.runStatus,
      startTime: record.startTime,
      pipeline: record.pipeline,
      training: record.training,
      source: record.source,
      workerPolling: live,
      ...(record.partial ? { partial: record.partial } : {}),
    };
    if (record.runStatus === 'RUNNING' && status.pipeline?.allocation?.state === 'allocating') {
      await this.pendingAllocation(handle, status.pipeline.allocation).catch(() => undefined);
    }
    if (record.runStatus === 'COMPLETED') status.result = await handle.result().catch(() => undefined);
    if (record.runStatus === 'FAILED') {
      status.failure = await handle.result().then(
        () => undefined,
        (error: Error) => describeError(error),
      );
    }
    return status;
  }

  /**
   * While the run waits for its Slurm allocation: the holder job, its state and Slurm's reason, and how long it has
   * waited, from the allocating activity's last heartbeat (the workflow learns them only once the job runs).
   */
  private async pendingAllocation(handle: WorkflowHandle, allocation: AllocationStatus): Promise<void> {
    const description = await handle.describe();
    const payload = description.raw.pendingActivities?.find((a) => a.activityType?.name === 'slurmAllocate')
      ?.heartbeatDetails?.payloads?.[0];
    if (!payload) return;
    const details = this.client.options.loadedDataConverter.payloadConverter.fromPayload<{
      jobId?: unknown;
      state?: unknown;
      reason?: unknown;
      waitingSince?: unknown;
    }>(payload);
    if (typeof details?.jobId === 'string') allocation.jobId = details.jobId;
    if (typeof details?.state === 'string') allocation.jobState = details.state;
    if (typeof details?.reason === 'string') allocation.pendingReason = details.reason;
    if (typeof details?.waitingSince === 'number')
      allocation.pendingMs = Math.max(0, Date.now() - details.waitingSince);
  }

  /** The status of every execution of a run name (re-runs, continuations), oldest first: a run's whole record. */
  async history(workflowId: string): Promise<RunStatus[]> {
    const live = await workerPolls(this.client, this.target.taskQueue);
    const runs = await executionsOf(this.client, workflowId);
    const out: RunStatus[] = [];
    for (const run of runs) out.push(await this.status(workflowId, { runId: run.runId, live }));
    return out;
  }

  /** Progress events until the run ends (polls the status query). */
  async *watch(workflowId: string, options: { intervalMs?: number } = {}): AsyncGenerator<ProgressEvent> {
    const seenSteps = new Map<string, string>();
    const seenCheckpoints = new Set<number>();
    let lastRollout: number | undefined;
    for (;;) {
      const status = await this.status(workflowId);
      yield { type: 'status', status };
      for (const step of status.pipeline?.steps ?? []) {
        if (seenSteps.get(step.id) !== step.state) {
          seenSteps.set(step.id, step.state);
          yield { type: 'step', step: step.id, state: step.state, reason: step.reason };
        }
      }
      const t = status.training;
      if (t?.lastRollout !== undefined && t.lastRollout !== lastRollout) {
        lastRollout = t.lastRollout;
        yield { type: 'rollout', rollout: t.lastRollout, numRollout: t.numRollout };
      }
      for (const c of t?.checkpoints ?? []) {
        if (!seenCheckpoints.has(c.iteration)) {
          seenCheckpoints.add(c.iteration);
          yield { type: 'checkpoint', iteration: c.iteration, evalScore: c.evalScore };
        }
      }
      if (status.runStatus !== 'RUNNING') {
        yield { type: 'ended', status };
        return;
      }
      await new Promise((r) => setTimeout(r, options.intervalMs ?? 1000));
    }
  }

  /** Running steps finish; no new step starts until `resume`. Refused (SteeringRefusedError) on an ended run. */
  async pause(workflowId: string): Promise<SteeringAnswer> {
    return this.steer(workflowId, 'pause', pauseUpdate, [], pauseSignal);
  }

  /** Undo a pause, or restart a training paused by its crash-loop guard; refused when nothing is paused. */
  async resume(workflowId: string): Promise<SteeringAnswer> {
    return this.steer(workflowId, 'resume', resumeUpdate, [], resumeSignal);
  }

  /** Stop what keel launched for the run; the run ends CANCELED. */
  async cancel(workflowId: string, reason?: string): Promise<SteeringAnswer> {
    return this.steer(workflowId, 'cancel', cancelUpdate, [{ reason }], cancelSignal);
  }

  /** Training stops its job at its next checkpoint and the run ends. */
  async stopAfterCheckpoint(workflowId: string): Promise<SteeringAnswer> {
    return this.steer(workflowId, 'stopAfterCheckpoint', stopAfterCheckpointUpdate, [], stopAfterCheckpointSignal);
  }

  /**
   * Steering is an Update: the run answers with what it will do, or its validator refuses with the reason. A run of
   * keel 0.5+ holds an Update sent before it is prepared and answers once it is. A run started by keel 0.1 has no
   * update handlers: it gets the signal of that version (no answer but delivery).
   */
  private async steer<Args extends unknown[]>(
    workflowId: string,
    what: string,
    update: UpdateDefinition<SteeringAnswer, Args>,
    args: Args,
    legacySignal: SignalDefinition<[]> | SignalDefinition<[{ reason?: string }?]>,
  ): Promise<SteeringAnswer> {
    const handle = this.client.workflow.getHandle(workflowId);
    try {
      return await handle.executeUpdate(update as UpdateDefinition<SteeringAnswer, unknown[]> as never, {
        args: args as never,
      });
    } catch (error) {
      const reason = describeError(error);
      if (/no (registered )?handler for update|unknown update/i.test(reason)) {
        // No Update handler: a run of keel 0.1 (steered by signals; it answers `status` once it runs), or a run of
        // keel 0.2-0.4 that is not prepared yet (its handlers come with its status). Never a signal to the latter.
        const phase = await handle
          .query(statusQuery)
          .then((s) => s.phase)
          .catch(() => undefined);
        if (phase === undefined || phase === 'validating') {
          throw new SteeringRefusedError(
            workflowId,
            what,
            'not ready: the run is being prepared (or waits for its Slurm allocation); retry in a few seconds',
          );
        }
        await handle.signal(legacySignal as SignalDefinition<unknown[]>, ...args);
        return { accepted: true, message: `sent as a signal (a run of keel 0.1, which has no Updates): ${what}` };
      }
      if (error instanceof WorkflowUpdateFailedError) throw new SteeringRefusedError(workflowId, what, reason);
      if (error instanceof WorkflowNotFoundError || /already completed|not found/i.test(reason)) {
        throw new SteeringRefusedError(workflowId, what, 'the run is not live (it has ended or never started)');
      }
      throw error;
    }
  }

  async list(): Promise<{ workflowId: string; status: string; type: string; startTime: Date; phase?: string }[]> {
    const out = [];
    for await (const w of this.client.workflow.list({ query: `WorkflowType = 'pipeline'` })) {
      const phase = w.searchAttributes?.KeelPhase as string[] | undefined;
      out.push({
        workflowId: w.workflowId,
        status: w.status.name,
        type: w.type,
        startTime: w.startTime,
        phase: phase?.[0],
      });
    }
    return out;
  }
}

export interface ScheduleRequest {
  /** a full spec or { preset, overrides }, validated here */
  spec: unknown;
  /** '7d', '12h' ... */
  every?: string;
  cron?: string;
  /** rollouts each retraining adds after the latest checkpoint */
  rollouts: number;
  promptData?: string;
  scheduleId?: string;
}

export interface ScheduleSummary {
  scheduleId: string;
  paused: boolean;
  note?: string;
  recentActions: { workflowId: string; scheduledAt: Date }[];
  nextActionTimes: Date[];
}

/** Schedules start the `retrain` workflow with overlap SKIP: never two retrainings of one model at once. */
export class KeelSchedules {
  constructor(
    private readonly client: Client,
    private readonly taskQueue: string,
  ) {}

  async create(request: ScheduleRequest): Promise<string> {
    const resolved = resolveSpecInput(request.spec);
    if (!resolved.ok) throw new InvalidSpecError(resolved.problems);
    if (!request.every === !request.cron) throw new Error('give exactly one of --every and --cron');
    const scheduleId = request.scheduleId ?? `keel-retrain-${resolved.spec.name}`;
    await this.client.schedule.create({
      scheduleId,
      spec: request.every
        ? { intervals: [{ every: request.every as `${number}d` }] }
        : { cronExpressions: [request.cron!] },
      action: {
        type: 'startWorkflow',
        workflowType: 'retrain',
        taskQueue: this.taskQueue,
        workflowId: scheduleId,
        staticSummary: `keel retraining of ${resolved.spec.name}: ${request.rollouts} more rollouts a time`,
        args: [{ spec: resolved.spec, rollouts: request.rollouts, promptData: request.promptData }],
      },
      policies: { overlap: ScheduleOverlapPolicy.SKIP },
    });
    return scheduleId;
  }

  async list(): Promise<ScheduleSummary[]> {
    const out: ScheduleSummary[] = [];
    for await (const s of this.client.schedule.list()) out.push(await this.describe(s.scheduleId));
    return out;
  }

  async describe(scheduleId: string): Promise<ScheduleSummary> {
    const d = await this.client.schedule.getHandle(scheduleId).describe();
    return {
      scheduleId,
      paused: d.state.paused,
      note: d.state.note,
      recentActions: d.info.recentActions.map((a) => ({
        workflowId: 'workflow' in a.action ? a.action.workflow.workflowId : '',
        scheduledAt: a.scheduledAt,
      })),
      nextActionTimes: d.info.nextActionTimes,
    };
  }

  async pause(scheduleId: string, note = 'paused with keel'): Promise<void> {
    await this.client.schedule.getHandle(scheduleId).pause(note);
  }

  async unpause(scheduleId: string, note = 'unpaused with keel'): Promise<void> {
    await this.client.schedule.getHandle(scheduleId).unpause(note);
  }

  async trigger(scheduleId: string): Promise<void> {
    await this.client.schedule.getHandle(scheduleId).trigger(ScheduleOverlapPolicy.SKIP);
  }

  async delete(scheduleId: string): Promise<void> {
    await this.client.schedule.getHandle(scheduleId).delete();
  }
}

/** One line for the Web UI: preset, name, rollouts. */
export function runSummary(spec: Spec): string {
  return `keel ${spec.preset ?? 'custom spec'}: ${spec.name}, ${spec.rollout.numRollout} rollouts`;
}

export function describeError(error: unknown): string {
  const parts: string[] = [];
  let e = error as { message?: string; cause?: unknown } | undefined;
  while (e) {
    if (e.message && !parts.includes(e.message)) parts.push(e.message);
    e = e.cause as typeof e;
  }
  return parts.join(': ');
}

export { formatProblems };
