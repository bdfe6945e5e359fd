// Run one program on one node as a durable step: launch it detached (or re-attach to the copy already running),
// heartbeat while it runs, return when it exits. A retried activity never starts a second copy.
import { ApplicationFailure } from '@temporalio/activity';
import type { Executor, LaunchSpec, NodeTarget, ProcessStatus } from '../src/exec/index.js';
import { activitySignal, heartbeat, sleepMs } from './context.js';

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
  let reattached = false;
  let launched = false;
  if (previous?.state === 'exited' && previous.exitCode === 0 && input.since && previous.launchedAt >= input.since) {
    // It finished while no worker watched it: the step's checks decide whether its outputs are complete.
    return { exitCode: 0, reattached: true, launched: false, logTail: await tailOf(executor, node, launch.id) };
  }
  if (previous?.state === 'running') reattached = true;
  const { reattached: wasRunning } = await executor.launch(node, launch);
  reattached = reattached || wasRunning;
  launched = !wasRunning;
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
    if (signal?.aborted) {
      // The step was cancelled: stop what we launched before reporting the cancellation.
      await executor.stop(node, launch.id, { graceMs: 5000 }).catch(() => undefined);
    }
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
  return { exitCode: status.exitCode ?? -1, reattached, launched, logTail };
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

/** A failed program: its exit code and the end of its output, as a retryable failure. */
export function programFailed(what: string, result: RunToEndResult): ApplicationFailure {
  return ApplicationFailure.retryable(
    `${what} exited with code ${result.exitCode}${result.logTail ? `; last output:\n${result.logTail.slice(-2000)}` : ''}`,
    'ProgramFailed',
  );
}
