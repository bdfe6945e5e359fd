// What activities share: the executor for a spec's cluster, node lookup, heartbeats, cancellation.
import { Context } from '@temporalio/activity';
import {
  LocalExecutor,
  SshExecutor,
  SlurmExecutor,
  defaultMaxConcurrentCommands,
  type Executor,
  type NodeTarget,
} from '../src/exec/index.js';
import type { NodeSpec, Spec } from '../src/spec/schema.js';
import { absolutize } from '../src/spec/paths.js';

export interface ActivityDeps {
  /** Directory relative spec paths resolve against (the keel checkout for tiny-local). */
  cwd: string;
  /** Worker environment, where named secrets and endpoints are read from. */
  env: NodeJS.ProcessEnv;
  /** Variables a spec may name beyond each field's own kind (activities/env-allowlist.ts): `--allow-env`. */
  allowEnv?: readonly string[];
}

/** Executors are reused across activities of one worker, one per distinct cluster configuration. */
const executors = new Map<string, Executor>();

/** Makes every executor of this worker process instead of the spec's (the scale benchmark's simulated nodes). */
let executorFactory: ((spec: Spec) => Executor) | undefined;

/**
 * From now on, `executorFor` asks `factory` for the executor of every spec (it may cache them itself). For a worker
 * that simulates its nodes, e.g. `test/bench/scale-worker.ts`; keel's own workers never call it.
 */
export function provideExecutors(factory: (spec: Spec) => Executor): void {
  executorFactory = factory;
}

export function executorFor(spec: Spec): Executor {
  if (executorFactory) return executorFactory(spec);
  const stateDir = (node: NodeTarget): string => spec.cluster.stateDir.replaceAll('{node}', node.name ?? node.host);
  const ex = spec.cluster.executor;
  // Specs recorded before the field existed have none: the default bound then.
  const maxConcurrentCommands = spec.cluster.maxConcurrentCommands ?? defaultMaxConcurrentCommands;
  const key = JSON.stringify([ex, spec.cluster.stateDir, maxConcurrentCommands]);
  let executor = executors.get(key);
  if (!executor) {
    if (ex.kind === 'slurm' && ex.jobId === undefined) {
      throw new Error('cluster.executor.jobId is not set: a Slurm run reaches its nodes only inside its allocation');
    }
    executor =
      ex.kind === 'local'
        ? new LocalExecutor({ stateDir, maxConcurrentCommands })
        : ex.kind === 'slurm'
          ? new SlurmExecutor({ stateDir, maxConcurrentCommands, jobId: ex.jobId!, slurmConf: ex.slurmConf })
          : new SshExecutor({
              stateDir,
              maxConcurrentCommands,
              user: ex.user,
              port: ex.port,
              identityFile: ex.identityFile,
              knownHostsFile: ex.knownHostsFile,
              strictHostKeyChecking: ex.strictHostKeyChecking,
              connectTimeoutSec: ex.connectTimeoutSec,
            });
    executors.set(key, executor);
  }
  return executor;
}

export async function closeExecutors(): Promise<void> {
  await Promise.allSettled([...executors.values()].map((e) => e.close()));
  executors.clear();
}

export function target(node: NodeSpec): NodeTarget {
  return { host: node.host, name: node.name ?? node.host, ...(node.port ? { port: node.port } : {}) };
}

export function allNodes(spec: Spec): NodeSpec[] {
  return [...spec.cluster.nodes, ...spec.cluster.spares];
}

export function findNode(spec: Spec, name: string): NodeSpec {
  const node = allNodes(spec).find((n) => (n.name ?? n.host) === name);
  if (!node) throw new Error(`no node named '${name}' in the spec`);
  return node;
}

/** The spec with local relative paths made absolute against the worker's directory. */
export function localSpec(spec: Spec, deps: ActivityDeps): Spec {
  return absolutize(spec, deps.cwd);
}

/** Heartbeat when running inside an activity (no-op in plain function calls, e.g. unit tests). */
export function heartbeat(details?: unknown): void {
  try {
    Context.current().heartbeat(details);
  } catch {
    // not in an activity context
  }
}

export function activitySignal(): AbortSignal | undefined {
  try {
    return Context.current().cancellationSignal;
  } catch {
    return undefined;
  }
}

/**
 * Whether the activity's cancellation is a cancel request from its workflow (the run or the step was cancelled). Only
 * then does an activity stop what it launched: a worker shutting down, a heartbeat timeout, a closed workflow or a
 * paused activity leave the program running, and the next attempt re-attaches to it.
 */
export function cancelRequested(): boolean {
  try {
    return Context.current().cancellationDetails?.cancelRequested === true;
  } catch {
    return false;
  }
}

/** When this activity was first scheduled (ISO; the same for all its Temporal retries), or undefined outside one. */
export function activityScheduledAt(): string | undefined {
  try {
    return new Date(Context.current().info.scheduledTimestampMs).toISOString();
  } catch {
    return undefined;
  }
}

export function lastHeartbeat<T>(): T | undefined {
  try {
    return Context.current().info.heartbeatDetails as T | undefined;
  } catch {
    return undefined;
  }
}

export function sleepMs(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Sleep `ms`, heartbeating every `everyMs` so that a long pause in an activity never looks like a dead worker. */
export async function pauseWithHeartbeats(ms: number, everyMs: number): Promise<void> {
  const signal = activitySignal();
  for (let left = ms; left > 0; left -= everyMs) {
    heartbeat({ pausing: true, leftMs: left });
    await sleepMs(Math.min(left, Math.max(1, everyMs)), signal);
  }
}

/**
 * Run `work`, heartbeating every `everyMs` while it runs: for a step made of bounded operations (each with its own
 * timeout) that may together outlast the heartbeat timeout on a slow or busy host.
 */
export async function withHeartbeats<T>(everyMs: number, what: string, work: () => Promise<T>): Promise<T> {
  const timer = setInterval(() => heartbeat({ working: what }), Math.max(100, everyMs));
  try {
    return await work();
  } finally {
    clearInterval(timer);
  }
}

/** Env values for `envFromWorker` entries (NAME -> worker env var name); missing ones are left out. */
export function envFromWorker(mapping: Record<string, string>, env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, from] of Object.entries(mapping)) {
    const value = env[from];
    if (value !== undefined) out[name] = value;
  }
  return out;
}
