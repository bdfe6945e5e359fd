// Run one program (or a gang of them) as a durable step: launch it detached (or re-attach to the copy already
// running), heartbeat while it runs, return when it exits. A retried activity never starts a second copy, and only a
// cancel request from the workflow stops the program: a worker that shuts down or dies leaves it running for the next
// attempt to re-attach to.
import { ApplicationFailure, log } from '@temporalio/activity';
import {
  GangMemberFailedError,
  runGang,
  type Executor,
  type GangResult,
  type LaunchSpec,
  type NodeTarget,
  type ProcessStatus,
  type RunGangOptions,
} from '../src/exec/index.js';
import { programFailureTypes } from '../src/failure-types.js';
import { activityScheduledAt, activitySignal, cancelRequested, heartbeat, sleepMs } from './context.js';

export interface RunToEndInput {
  executor: Executor;
  node: NodeTarget;
  launch: LaunchSpec;
  /** when the step began (ISO): a record launched since then that exited 0 counts as this step's success */
  since?: string;
  pollMs?: number;
  /** extra heartbeat details (e.g. bytes done), called on every poll */
  progress?: () => Promise<Record<string, unknown>>;
}

export interface RunToEndResult {
  exitCode: number;
  reattached: boolean;
  launched: boolean;
  logTail: string;
}

export async function runToEnd(input: RunToEndInput): Promise<RunToEndResult> {
  const { executor, node, launch } = input;
  const signal = activitySignal();
  const previous = await executor.status(node, launch.id);
  if (previous?.state === 'exited' && endedUnwatched(previous, input.since)) {
    // It ended while no worker watched it: this activity's own launch (any exit code), or a success of this step.
    const logTail = await tailOf(executor, node, launch.id);
    return { exitCode: previous.exitCode ?? -1, reattached: true, launched: false, logTail };
  }
  const { reattached } = await executor.launch(node, launch);
  let status: ProcessStatus | undefined;
  try {
    for (;;) {
      status = await executor.status(node, launch.id);
      if (!status || status.state !== 'running') break;
      const extra = input.progress ? await input.progress().catch(() => ({})) : {};
      heartbeat({ launchId: launch.id, pid: status.pid, ...extra });
      await sleepMs(input.pollMs ?? 1000, signal);
    }
  } catch (error) {
    if (signal?.aborted) await onAbort(() => executor.stop(node, launch.id, { graceMs: 5000 }), launch.id);
    throw error;
  }
  const logTail = await tailOf(executor, node, launch.id);
  if (!status) throw new Error(`process ${launch.id} on ${node.name ?? node.host} left no record`);
  if (status.state === 'lost') {
    throw ApplicationFailure.retryable(
      `${launch.argv[0]} on ${node.name ?? node.host} was lost (node down?)`,
      'ProcessLost',
    );
  }
  return { exitCode: status.exitCode ?? -1, reattached, launched: !reattached, logTail };
}

/**
 * A gang as a durable step: heartbeats on every poll, re-attaches to the gang in flight (or judges the one this
 * activity launched that ended while no worker watched), stops the members only on a cancel request, and reports a
 * failed member as a program failure (the pipeline's step loop decides about a new attempt).
 */
export async function runGangToEnd(
  options: Omit<RunGangOptions, 'signal' | 'stopOnAbort' | 'launchedSince'>,
): Promise<GangResult> {
  const launchedSince = activityScheduledAt();
  try {
    return await runGang({
      ...options,
      signal: activitySignal(),
      stopOnAbort: () => {
        const stop = cancelRequested();
        if (!stop) log.info('activity ended without a cancel request: the gang keeps running', { gang: options.id });
        return stop;
      },
      ...(launchedSince === undefined ? {} : { launchedSince }),
      onProgress: (event) => {
        heartbeat({ gang: event.type, rank: 'rank' in event ? event.rank : undefined });
        options.onProgress?.(event);
      },
    });
  } catch (error) {
    if (error instanceof GangMemberFailedError) {
      throw ApplicationFailure.retryable(error.message, programFailureTypes.gangMemberFailed, {
        gang: error.gangId,
        rank: error.rank,
        node: error.node,
        exitCode: error.exitCode,
      });
    }
    throw error;
  }
}

/** A record that ended while nobody watched and belongs to this caller. */
function endedUnwatched(previous: ProcessStatus, stepSince: string | undefined): boolean {
  const activitySince = activityScheduledAt();
  if (activitySince !== undefined && previous.launchedAt >= activitySince) return true;
  return previous.exitCode === 0 && stepSince !== undefined && previous.launchedAt >= stepSince;
}

/** The activity is ending early: stop the program on a cancel request only. */
async function onAbort(stop: () => Promise<void>, launchId: string): Promise<void> {
  if (cancelRequested()) {
    await stop().catch(() => undefined);
    return;
  }
  log.info('activity ended without a cancel request: the program keeps running', { launchId });
}

/** The last 4 kB of a launched program's output. */
export async function tailOf(executor: Executor, node: NodeTarget, id: string): Promise<string> {
  try {
    let offset = 0;
    let last = '';
    for (;;) {
      const chunk = await executor.tail(node, id, offset, 1 << 20);
      if (chunk.nextOffset === offset) return last.slice(-4096);
      last = (last + chunk.text).slice(-8192);
      offset = chunk.nextOffset;
    }
  } catch {
    return '';
  }
}

/** A program that ran and failed: its exit code and the end of its output, as a program failure. */
export function programFailed(what: string, result: RunToEndResult): ApplicationFailure {
  return ApplicationFailure.retryable(
    `${what} exited with code ${result.exitCode}${result.logTail ? `; last output:\n${result.logTail.slice(-2000)}` : ''}`,
    programFailureTypes.programFailed,
  );
}
