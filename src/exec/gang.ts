// A gang: one argv per node with shared rendezvous env (MASTER_ADDR, MASTER_PORT, NODE_RANK, NNODES), all or nothing.
// Member `rank` is launched as `<id>/rank-<rank>`. A member that exits non-zero or is lost stops the others; the gang
// then fails (or, with maxAttempts > 1, is launched again as a whole). A caller that stops waiting (abort) leaves the
// members running unless it asks for them to be stopped.
import { ExecError } from './errors.js';
import { validateLaunchId } from './launch-spec.js';
import { nodeName, type Executor, type NodeTarget, type ProcessRecord, type ProcessStatus } from './types.js';

export interface GangMember {
  node: NodeTarget;
  argv: string[];
  env?: Record<string, string>;
  secretEnv?: Record<string, string>;
  cwd?: string;
}

export type GangProgress =
  | { type: 'launched' | 'reattached'; attempt: number; rank: number; record: ProcessRecord }
  | { type: 'exited'; attempt: number; rank: number; exitCode: number }
  | { type: 'failed'; attempt: number; error: GangMemberFailedError }
  | { type: 'stopping'; attempt: number; ranks: number[] }
  /** after every poll that found members still running: a durable caller heartbeats on it */
  | { type: 'running'; attempt: number; ranks: number[] };

export interface RunGangOptions {
  executor: Executor;
  /** Launch id prefix of the gang; member ids are `<id>/rank-<rank>`. */
  id: string;
  members: GangMember[];
  masterAddr: string;
  masterPort: number;
  /** How often member states are polled. Default 1000 ms. */
  pollMs?: number;
  /** Grace between TERM and KILL when members are stopped. Default 10 s. */
  graceMs?: number;
  /** Attempts of the whole gang. Default 1: retries are normally the activity's business. */
  maxAttempts?: number;
  /** Bytes of a failed member's log carried by the error. Default 4096. */
  tailBytes?: number;
  /** Aborting ends the wait and rejects with the signal's reason; the members are stopped when `stopOnAbort` says so. */
  signal?: AbortSignal;
  /**
   * Asked when `signal` aborts: true stops every member (a cancel request), false leaves them running for the next
   * caller to re-attach to (a worker shutting down). Default: stop.
   */
  stopOnAbort?: () => boolean;
  /**
   * The caller's own launches start at this time (ISO): a gang with no member running whose members were all
   * launched since then ended while nobody watched, and is judged (done, or failed) instead of launched again.
   */
  launchedSince?: string;
  onProgress?: (event: GangProgress) => void;
}

export interface GangResult {
  records: ProcessRecord[];
  attempts: number;
}

export class GangMemberFailedError extends ExecError {
  override readonly type = 'GangMemberFailed';
  constructor(
    readonly gangId: string,
    readonly rank: number,
    readonly node: string,
    readonly state: 'exited' | 'lost',
    readonly exitCode: number | undefined,
    readonly logTail: string,
  ) {
    super(
      `gang ${gangId}: rank ${rank} on ${node} ${state === 'lost' ? 'was lost' : `exited with code ${exitCode}`}` +
        (logTail ? `; last output:\n${logTail}` : ''),
    );
  }
}

export function gangMemberId(id: string, rank: number): string {
  return `${id}/rank-${rank}`;
}

export async function runGang(options: RunGangOptions): Promise<GangResult> {
  validateLaunchId(options.id);
  if (options.members.length === 0) throw new ExecError(`gang ${options.id} has no members`);
  const maxAttempts = Math.max(1, options.maxAttempts ?? 1);
  for (let attempt = 1; ; attempt++) {
    try {
      const records = await runAttempt(options, attempt);
      return { records, attempts: attempt };
    } catch (error) {
      if (!(error instanceof GangMemberFailedError) || attempt >= maxAttempts) throw error;
    }
  }
}

async function runAttempt(options: RunGangOptions, attempt: number): Promise<ProcessRecord[]> {
  const { executor, members, signal } = options;
  const ids = members.map((_, rank) => gangMemberId(options.id, rank));
  const statusOf = (rank: number): Promise<ProcessStatus | undefined> =>
    executor.status(members[rank]!.node, ids[rank]!);
  signal?.throwIfAborted();

  // A retried caller finds its gang in flight: re-attach to it (members that already exited 0 count as done).
  // With no member running, the gang is launched afresh.
  const before = await Promise.all(members.map((_, rank) => statusOf(rank)));
  const inFlight = before.some((status) => status?.state === 'running');
  if (!inFlight && attempt === 1 && launchedByCaller(before, options.launchedSince)) {
    const failed = before.findIndex((status) => !(status.state === 'exited' && status.exitCode === 0));
    if (failed < 0) return before.map(stripStatus);
    throw await memberFailure(options, failed, before[failed]!);
  }
  const done = new Set<number>();
  const records = await Promise.all(
    members.map(async (member, rank) => {
      const previous = before[rank];
      if (inFlight && previous && previous.state === 'exited' && previous.exitCode === 0) {
        done.add(rank);
        return stripStatus(previous);
      }
      if (inFlight && previous && previous.state !== 'running') return stripStatus(previous); // judged by the poll
      const { record, reattached } = await executor.launch(member.node, {
        id: ids[rank]!,
        argv: member.argv,
        ...(member.cwd === undefined ? {} : { cwd: member.cwd }),
        env: { ...member.env, ...rendezvousEnv(options, rank) },
        ...(member.secretEnv === undefined ? {} : { secretEnv: member.secretEnv }),
      });
      options.onProgress?.({ type: reattached ? 'reattached' : 'launched', attempt, rank, record });
      return record;
    }),
  ).catch(async (error: unknown) => {
    await stopMembers(options, ids, attempt);
    throw error;
  });

  try {
    while (done.size < members.length) {
      await sleep(options.pollMs ?? 1000, signal);
      const statuses = await Promise.all(members.map((_, rank) => (done.has(rank) ? undefined : statusOf(rank))));
      for (const [rank, status] of statuses.entries()) {
        if (status === undefined || done.has(rank) || status.state === 'running') continue;
        if (status.state === 'exited' && status.exitCode === 0) {
          done.add(rank);
          options.onProgress?.({ type: 'exited', attempt, rank, exitCode: 0 });
          continue;
        }
        const error = await memberFailure(options, rank, status);
        options.onProgress?.({ type: 'failed', attempt, error });
        await stopMembers(options, ids, attempt);
        throw error;
      }
      const running = statuses.flatMap((status, rank) => (status?.state === 'running' ? [rank] : []));
      if (running.length) options.onProgress?.({ type: 'running', attempt, ranks: running });
    }
  } catch (error) {
    if (signal?.aborted && (options.stopOnAbort?.() ?? true)) await stopMembers(options, ids, attempt);
    throw error;
  }
  return records;
}

function launchedByCaller(
  statuses: (ProcessStatus | undefined)[],
  since: string | undefined,
): statuses is ProcessStatus[] {
  return since !== undefined && statuses.every((status) => status !== undefined && status.launchedAt >= since);
}

function rendezvousEnv(options: RunGangOptions, rank: number): Record<string, string> {
  return {
    MASTER_ADDR: options.masterAddr,
    MASTER_PORT: String(options.masterPort),
    NODE_RANK: String(rank),
    NNODES: String(options.members.length),
  };
}

async function memberFailure(
  options: RunGangOptions,
  rank: number,
  status: ProcessStatus,
): Promise<GangMemberFailedError> {
  const node = options.members[rank]!.node;
  const tailBytes = options.tailBytes ?? 4096;
  let logTail = '';
  try {
    const result = await options.executor.run(node, ['tail', '-c', String(tailBytes), '--', status.logFile]);
    if (result.exitCode === 0) logTail = result.stdout;
  } catch {
    // the node may be gone (state lost): the error still names the member
  }
  const state = status.state === 'lost' ? 'lost' : 'exited';
  return new GangMemberFailedError(options.id, rank, nodeName(node), state, status.exitCode, logTail);
}

async function stopMembers(options: RunGangOptions, ids: string[], attempt: number): Promise<void> {
  const ranks = ids.map((_, rank) => rank);
  options.onProgress?.({ type: 'stopping', attempt, ranks });
  await Promise.all(
    ranks.map((rank) =>
      options.executor
        .stop(options.members[rank]!.node, ids[rank]!, { graceMs: options.graceMs ?? 10_000 })
        .catch(() => undefined),
    ),
  );
}

function stripStatus(status: ProcessStatus): ProcessRecord {
  const { state: _state, exitCode: _exitCode, ...record } = status;
  return record;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
