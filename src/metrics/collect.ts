// The per-run figures at scrape time, from Temporal itself: the running keel pipelines and trainings on the worker's
// task queue (visibility), each training's status query, its supervision's last heartbeat (describe) and the node pool
// of the spec it was started with (the first event of its run, read once per run). Bounded: at most `maxRuns` runs
// and one deadline for the whole scrape, so a scrape never hangs on a slow server or a busy worker.
import type { Client } from '@temporalio/client';
import type { Payload } from '@temporalio/common';
import { z } from 'zod';
import { trainingStatusQuery } from '../../workflows/definitions.js';
import { keelPhase, keelPreset } from '../search-attributes.js';
import {
  liveCursorSchema,
  trainingFigures,
  trainingStatusSchema,
  type LiveCursor,
  type NodePool,
  type TrainingFigures,
} from './training-figures.js';

export interface CollectOptions {
  taskQueue: string;
  /** the most runs (pipelines and trainings) one scrape reports */
  maxRuns: number;
  /** the whole scrape's deadline */
  timeoutMs: number;
  /** trainings read at once */
  concurrency?: number;
}

export interface PipelineSample {
  run: string;
  phase?: string;
  preset?: string;
}

export interface TrainingReading {
  /** the pipeline's workflow id (`keel status` takes it) */
  run: string;
  workflowId: string;
  figures?: TrainingFigures;
  /** why the figures are missing (the query timed out, no worker answered ...) */
  error?: string;
}

export interface RunsSnapshot {
  pipelines: PipelineSample[];
  trainings: TrainingReading[];
  /** more runs were running than `maxRuns` */
  truncated: boolean;
  /** listing the runs failed: nothing per run is known */
  listError?: string;
  seconds: number;
}

const nodeSchema = z.object({ host: z.string(), name: z.string().optional() });
const trainingInputSchema = z.object({
  spec: z.object({
    cluster: z.object({ nodes: z.array(nodeSchema), spares: z.array(nodeSchema) }),
    distributed: z.object({ actorNumNodes: z.number() }),
  }),
});

const supervisionActivity = 'superviseUntilCheckpoint';

export class RunCollector {
  /** the node pool of each training's current run (a run's input never changes) */
  private readonly pools = new Map<string, { runId: string; pool?: NodePool }>();

  constructor(
    private readonly client: Client,
    private readonly options: CollectOptions,
  ) {}

  async collect(): Promise<RunsSnapshot> {
    const started = Date.now();
    const deadline = started + this.options.timeoutMs;
    const snapshot: RunsSnapshot = { pipelines: [], trainings: [], truncated: false, seconds: 0 };
    const trainings: { workflowId: string; run: string }[] = [];
    try {
      await this.bounded(deadline, async () => {
        for await (const w of this.client.workflow.list({ query: this.listQuery(), pageSize: 100 })) {
          if (snapshot.pipelines.length + trainings.length >= this.options.maxRuns) {
            snapshot.truncated = true;
            break;
          }
          if (w.type === 'pipeline') {
            snapshot.pipelines.push({
              run: w.workflowId,
              phase: w.typedSearchAttributes.get(keelPhase),
              preset: w.typedSearchAttributes.get(keelPreset),
            });
          } else {
            const run = w.parentExecution?.workflowId ?? w.workflowId.replace(/-training$/, '');
            trainings.push({ workflowId: w.workflowId, run });
          }
        }
      });
    } catch (error) {
      snapshot.listError = message(error);
    }
    snapshot.trainings = await mapBounded(trainings, this.options.concurrency ?? 8, async (t) => {
      try {
        return { ...t, figures: await this.bounded(deadline, () => this.readTraining(t.workflowId)) };
      } catch (error) {
        return { ...t, error: message(error) };
      }
    });
    const seen = new Set(snapshot.trainings.map((t) => t.workflowId));
    for (const workflowId of this.pools.keys()) if (!seen.has(workflowId)) this.pools.delete(workflowId);
    snapshot.seconds = (Date.now() - started) / 1000;
    return snapshot;
  }

  private listQuery(): string {
    const queue = this.options.taskQueue.replace(/\\/g, '\\\\').replace(/'/g, "\\'");
    return `TaskQueue = '${queue}' AND ExecutionStatus = 'Running' AND (WorkflowType = 'pipeline' OR WorkflowType = 'training')`;
  }

  private async readTraining(workflowId: string): Promise<TrainingFigures> {
    const handle = this.client.workflow.getHandle(workflowId);
    const description = await handle.describe();
    const [rawStatus, pool] = await Promise.all([
      handle.query(trainingStatusQuery),
      this.nodePool(workflowId, description.runId),
    ]);
    const status = trainingStatusSchema.safeParse(rawStatus);
    if (!status.success) {
      const issue = status.error.issues[0];
      throw new Error(`unexpected training status: ${issue?.path.join('.') || 'status'}: ${issue?.message ?? ''}`);
    }
    const heartbeat = description.raw.pendingActivities?.find((a) => a.activityType?.name === supervisionActivity)
      ?.heartbeatDetails?.payloads?.[0];
    return trainingFigures(
      {
        status: status.data,
        live: heartbeat ? this.liveCursor(heartbeat) : undefined,
        pool,
        startedAt: description.startTime,
      },
      Date.now(),
    );
  }

  private liveCursor(payload: Payload): LiveCursor | undefined {
    try {
      const details = this.client.options.loadedDataConverter.payloadConverter.fromPayload<{ cursor?: unknown }>(
        payload,
      );
      const cursor = liveCursorSchema.safeParse(details?.cursor);
      return cursor.success ? cursor.data : undefined;
    } catch {
      return undefined;
    }
  }

  /** The node pool of the spec this training run was started with (its first history event), once per run. */
  private async nodePool(workflowId: string, runId: string): Promise<NodePool | undefined> {
    const cached = this.pools.get(workflowId);
    if (cached?.runId === runId) return cached.pool;
    const { history } = await this.client.workflowService.getWorkflowExecutionHistory({
      namespace: this.client.options.namespace,
      execution: { workflowId, runId },
      maximumPageSize: 1,
    });
    const payload = history?.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
    let pool: NodePool | undefined;
    if (payload) {
      const input = trainingInputSchema.safeParse(
        this.client.options.loadedDataConverter.payloadConverter.fromPayload(payload),
      );
      if (input.success) {
        const { cluster, distributed } = input.data.spec;
        const name = (n: z.infer<typeof nodeSchema>) => n.name ?? n.host;
        pool = {
          names: [...cluster.nodes, ...cluster.spares].map(name),
          initial: cluster.nodes.slice(0, distributed.actorNumNodes).map(name),
        };
      }
    }
    this.pools.set(workflowId, { runId, pool });
    return pool;
  }

  /** Run `fn` with every Temporal call in it bounded by `deadline`, and give up at the deadline in any case. */
  private async bounded<T>(deadline: number, fn: () => Promise<T>): Promise<T> {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error('no time left in this scrape');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within the scrape's ${this.options.timeoutMs} ms`)), left);
    });
    try {
      return await Promise.race([this.client.withDeadline(deadline, fn), timeout]);
    } catch (error) {
      // The client's own deadline can win the race against the timer; the SDK then wraps it as, e.g., "Failed to
      // query Workflow". Say what happened instead.
      if (Date.now() >= deadline || deadlineExceeded(error)) {
        throw new Error(`no answer within the scrape's ${this.options.timeoutMs} ms`, { cause: error });
      }
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** gRPC's status code DEADLINE_EXCEEDED (grpc/doc/statuscodes.md) */
const grpcDeadlineExceeded = 4;

/** Whether `error`, or an error it wraps, is gRPC's DEADLINE_EXCEEDED. */
function deadlineExceeded(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if ((e as { code?: unknown }).code === grpcDeadlineExceeded) return true;
  }
  return false;
}

async function mapBounded<T, R>(items: T[], concurrency: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  });
  await Promise.all(lanes);
  return out;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message.split('\n')[0]! : String(error);
}
