// A run's record, read from Temporal with or without a worker. A query needs a worker to replay the run (30 s of
// waiting when none polls), so a run is read from its history when no worker polls its task queue, or when it has
// ended and left its final record in its memo (keel 0.4+). Runs of earlier versions, read without a worker, give what
// their history holds: a completed pipeline's steps (its result), and the training record as the last run of its
// chain started (the state continue-as-new carried).
import type { Client, WorkflowExecutionDescription, WorkflowHandle } from '@temporalio/client';
import proto from '@temporalio/proto';
import {
  recordMemoKey,
  statusQuery,
  trainingStatusQuery,
  type PipelineStatus,
  type StepStatus,
  type TrainingStatus,
} from '../../workflows/definitions.js';

/** Where a status came from: a worker answering queries, or the run's history (memo, result, carried state). */
export type RecordSource = 'worker' | 'history';

export interface ExecutionRecord {
  runId: string;
  runStatus: string;
  startTime: Date;
  closeTime?: Date;
  pipeline?: PipelineStatus;
  training?: TrainingStatus;
  /** how the record was read; `history` names what part of the history */
  source: RecordSource;
  /** what the history could not give (e.g. a run of an earlier keel read without a worker) */
  partial?: string;
}

/**
 * Whether a worker polls this task queue's workflow tasks: one seen in the last 90 s (a live worker's long poll is
 * renewed about every minute; the server lists pollers it saw minutes ago).
 */
export async function workerPolls(client: Client, taskQueue: string): Promise<boolean> {
  const answer = await client.workflowService.describeTaskQueue({
    namespace: client.options.namespace,
    taskQueue: { name: taskQueue },
    taskQueueType: proto.temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
  });
  const since = Date.now() / 1000 - 90;
  return (answer.pollers ?? []).some((p) => Number(p.lastAccessTime?.seconds ?? 0) >= since);
}

/** A query answered by a worker, or undefined when none answers in time (a worker that just stopped). */
async function answered<T>(client: Client, ask: () => Promise<T>): Promise<T | undefined> {
  return client.connection.withDeadline(Date.now() + queryDeadlineMs, ask).catch(() => undefined);
}

/** Long enough for a worker to replay a run's history (continue-as-new keeps it to a few thousand events). */
const queryDeadlineMs = 15_000;

/**
 * The record of one execution of a pipeline (the newest when runId is not given) and of its training chain. `live`:
 * whether a worker polls (see workerPolls); without one nothing is queried.
 */
export async function readExecution(
  client: Client,
  workflowId: string,
  options: { runId?: string; live: boolean },
): Promise<ExecutionRecord> {
  const handle = client.workflow.getHandle(workflowId, options.runId);
  const description = await handle.describe();
  const record: ExecutionRecord = {
    runId: description.runId,
    runStatus: description.status.name,
    startTime: description.startTime,
    ...(description.closeTime ? { closeTime: description.closeTime } : {}),
    source: 'history',
  };
  const gaps: string[] = [];
  const fromMemo = memoRecord<PipelineStatus>(description);
  if (fromMemo) record.pipeline = fromMemo;
  else if (options.live) {
    record.pipeline = await answered(client, () => handle.query(statusQuery));
    if (record.pipeline) record.source = 'worker';
  }
  if (!record.pipeline) {
    record.pipeline = await pipelineFromResult(handle, description);
    if (!record.pipeline) gaps.push('the steps (a run is recorded in history when it ends; a worker answers before)');
  }
  const chain = await trainingChainOf(client, workflowId, description.runId);
  if (chain) {
    const training = await readTraining(client, chain, options.live);
    record.training = training.record;
    if (training.source === 'worker') record.source = 'worker';
    if (training.partial) gaps.push(training.partial);
  }
  if (gaps.length) record.partial = gaps.join('; ');
  return record;
}

/** Every execution of a run name (re-runs, continuations), oldest first. */
export async function executionsOf(client: Client, workflowId: string): Promise<{ runId: string; startTime: Date }[]> {
  const runs: { runId: string; startTime: Date }[] = [];
  for await (const w of client.workflow.list({ query: `WorkflowId = '${escapeQuoted(workflowId)}'` })) {
    runs.push({ runId: w.runId, startTime: w.startTime });
  }
  return runs.sort((a, b) => a.startTime.getTime() - b.startTime.getTime());
}

function memoRecord<T>(description: WorkflowExecutionDescription): T | undefined {
  return description.memo?.[recordMemoKey] as T | undefined;
}

/** A completed pipeline's result holds its steps (every keel version). */
async function pipelineFromResult(
  handle: WorkflowHandle,
  description: WorkflowExecutionDescription,
): Promise<PipelineStatus | undefined> {
  if (description.status.name !== 'COMPLETED') return undefined;
  const result = (await handle.result().catch(() => undefined)) as
    { name?: string; phase?: PipelineStatus['phase']; steps?: StepStatus[] } | undefined;
  if (!result?.steps) return undefined;
  return {
    name: result.name ?? description.workflowId,
    phase: result.phase ?? 'succeeded',
    paused: false,
    steps: result.steps,
    warnings: [],
  };
}

interface TrainingChain {
  workflowId: string;
  /** the chain's newest run (its last continue-as-new segment) */
  runId: string;
}

/** The training chain a pipeline execution started: the newest run of `<id>-training` whose parent is that execution. */
async function trainingChainOf(
  client: Client,
  workflowId: string,
  pipelineRunId: string,
): Promise<TrainingChain | undefined> {
  const trainingId = `${workflowId}-training`;
  // The newest run of the name is usually the one wanted (and visibility may not list a run just started).
  const latest = await client.workflow
    .getHandle(trainingId)
    .describe()
    .catch(() => undefined);
  if (latest?.parentExecution?.runId === pipelineRunId) return { workflowId: trainingId, runId: latest.runId };
  let newest: { runId: string; start: number } | undefined;
  for await (const w of client.workflow.list({ query: `WorkflowId = '${escapeQuoted(trainingId)}'` })) {
    if (w.parentExecution?.runId !== pipelineRunId) continue;
    if (!newest || w.startTime.getTime() > newest.start) newest = { runId: w.runId, start: w.startTime.getTime() };
  }
  return newest && { workflowId: trainingId, runId: newest.runId };
}

async function readTraining(
  client: Client,
  chain: TrainingChain,
  live: boolean,
): Promise<{ record?: TrainingStatus; source: RecordSource; partial?: string }> {
  const handle = client.workflow.getHandle(chain.workflowId, chain.runId);
  const description = await handle.describe();
  const fromMemo = memoRecord<TrainingStatus>(description);
  if (fromMemo) return { record: fromMemo, source: 'history' };
  if (live) {
    const answer = await answered(client, () => handle.query(trainingStatusQuery));
    if (answer) return { record: answer, source: 'worker' };
  }
  // The state the run started with: carried by continue-as-new, so it holds the chain's record up to that point.
  const carried = await startedState(client, handle);
  const note = `training as of ${description.startTime.toISOString()} (the start of its latest run)`;
  return carried ? { record: carried, source: 'history', partial: note } : { source: 'history', partial: 'training' };
}

async function startedState(client: Client, handle: WorkflowHandle): Promise<TrainingStatus | undefined> {
  const history = await handle.fetchHistory();
  const started = history.events?.[0]?.workflowExecutionStartedEventAttributes;
  const payload = started?.input?.payloads?.[0];
  if (!payload) return undefined;
  const input = client.options.loadedDataConverter.payloadConverter.fromPayload<{ state?: TrainingStatus }>(payload);
  return input?.state;
}

function escapeQuoted(value: string): string {
  return value.replaceAll('\\', '\\\\').replaceAll("'", "\\'");
}
