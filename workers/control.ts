// The control worker: every workflow and activity on one task queue (default `keel`; src/client/connection.ts), logs
// through pino (workers/logging.ts), graceful shutdown on SIGINT/SIGTERM. Killing it never kills a launched program:
// they run detached with process records.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { NativeConnection, Worker } from '@temporalio/worker';
import { closeExecutors, createActivities } from '../activities/index.js';
import { connectionOptions, temporalTarget, type TemporalTarget } from '../src/client/connection.js';
import type { LogOutput } from '../src/log.js';
import type { TemporalSection } from '../src/spec/schema.js';
import { installWorkerLogging } from './logging.js';

export const workflowsPath = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));
/** `npm run bundle` writes it; a worker given it (--bundle) does not bundle workflow code at start-up. */
export const defaultBundlePath = fileURLToPath(new URL('../.keel/workflow-bundle.js', import.meta.url));

export interface WorkerOptions {
  /** flags: override the env (KEEL_TEMPORAL_*) and `spec` */
  target?: Partial<TemporalTarget>;
  /** a spec's `temporal` section: address, namespace, task queue, TLS, API key env var */
  spec?: TemporalSection;
  cwd?: string;
  /** a prebuilt workflow bundle (from `npm run bundle`); default: env KEEL_WORKFLOW_BUNDLE, else bundle at start */
  bundlePath?: string;
  /** where the worker's logs (keel's and the Temporal SDK's) go; default JSON lines on stdout */
  logs?: LogOutput;
  /** pino level; default env KEEL_LOG_LEVEL, else info */
  logLevel?: string;
}

export async function createControlWorker(
  options: WorkerOptions = {},
): Promise<{ worker: Worker; connection: NativeConnection; target: TemporalTarget }> {
  installWorkerLogging(options.logs, options.logLevel ?? process.env.KEEL_LOG_LEVEL);
  const target = temporalTarget(options.target, process.env, options.spec);
  const connection = await NativeConnection.connect(await connectionOptions(target));
  const bundlePath = options.bundlePath ?? process.env.KEEL_WORKFLOW_BUNDLE;
  if (bundlePath && !existsSync(bundlePath)) throw new Error(`no workflow bundle at ${bundlePath}: run npm run bundle`);
  const worker = await Worker.create({
    connection,
    namespace: target.namespace,
    taskQueue: target.taskQueue,
    ...(bundlePath ? { workflowBundle: { codePath: bundlePath } } : { workflowsPath }),
    activities: createActivities({ cwd: options.cwd ?? process.cwd(), env: process.env }),
    shutdownGraceTime: '10s',
  });
  return { worker, connection, target };
}

export async function runControlWorker(options: WorkerOptions = {}): Promise<void> {
  const { worker, connection } = await createControlWorker(options);
  try {
    await worker.run();
  } finally {
    await closeExecutors();
    await connection.close();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await runControlWorker();
}
