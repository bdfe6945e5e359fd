// The control worker: task queue `keel`, every workflow and activity, logs through pino (secrets redacted), graceful
// shutdown on SIGINT/SIGTERM. Killing it never kills a launched program: they run detached with process records.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DefaultLogger, NativeConnection, Runtime, Worker, type LogLevel } from '@temporalio/worker';
import { closeExecutors, createActivities } from '../activities/index.js';
import { connectionOptions, temporalTarget, type TemporalTarget } from '../src/client/connection.js';
import { createLogger } from '../src/log.js';

export const workflowsPath = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));
/** `npm run bundle` writes it; a worker given it (--bundle) does not bundle workflow code at start-up. */
export const defaultBundlePath = fileURLToPath(new URL('../.keel/workflow-bundle.js', import.meta.url));

let runtimeInstalled = false;

function installRuntimeLogger(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  const logger = createLogger({ name: 'keel-worker' });
  Runtime.install({
    logger: new DefaultLogger((process.env.KEEL_LOG_LEVEL?.toUpperCase() as LogLevel) ?? 'INFO', (entry) => {
      const level = entry.level.toLowerCase() as 'trace' | 'debug' | 'info' | 'warn' | 'error';
      logger[level === 'trace' ? 'trace' : level]({ ...entry.meta }, entry.message);
    }),
  });
}

export interface WorkerOptions {
  target?: Partial<TemporalTarget>;
  cwd?: string;
  /** a prebuilt workflow bundle (from `npm run bundle`); default: env KEEL_WORKFLOW_BUNDLE, else bundle at start */
  bundlePath?: string;
}

export async function createControlWorker(
  options: WorkerOptions = {},
): Promise<{ worker: Worker; connection: NativeConnection }> {
  installRuntimeLogger();
  const target = temporalTarget(options.target);
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
  return { worker, connection };
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
