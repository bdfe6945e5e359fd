// The control worker: task queue `keel`, every workflow and activity, logs through pino (secrets redacted; the SDK's
// native lines too), graceful shutdown on SIGINT/SIGTERM, and optionally a Prometheus endpoint (docs/metrics.md).
// Killing it never kills a launched program: they run detached with process records.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Client } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { closeExecutors, createActivities } from '../activities/index.js';
import { connectionOptions, temporalTarget, type TemporalTarget } from '../src/client/connection.js';
import { createLogger } from '../src/log.js';
import { RunCollector } from '../src/metrics/collect.js';
import { startMetricsServer, type MetricsServer } from '../src/metrics/server.js';
import { installWorkerRuntime } from './runtime.js';

export const workflowsPath = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));
/** `npm run bundle` writes it; a worker given it (--bundle) does not bundle workflow code at start-up. */
export const defaultBundlePath = fileURLToPath(new URL('../.keel/workflow-bundle.js', import.meta.url));

export interface MetricsOptions {
  port: number;
  /** the address to listen on (default 127.0.0.1) */
  host?: string;
  /** the most runs one scrape reports (default 100) */
  maxRuns?: number;
  /** one scrape's deadline for reading the runs (default 5 s) */
  timeoutMs?: number;
}

export interface WorkerOptions {
  target?: Partial<TemporalTarget>;
  cwd?: string;
  /** a prebuilt workflow bundle (from `npm run bundle`); default: env KEEL_WORKFLOW_BUNDLE, else bundle at start */
  bundlePath?: string;
  /** serve Prometheus metrics: the SDK's own and keel's per-run figures */
  metrics?: MetricsOptions;
}

export interface ControlWorker {
  worker: Worker;
  connection: NativeConnection;
  metrics?: MetricsServer;
}

export async function createControlWorker(options: WorkerOptions = {}): Promise<ControlWorker> {
  const logger = createLogger({ name: 'keel-worker' });
  // Before any connection: the runtime is process-wide and fixed once a connection exists.
  const runtime = await installWorkerRuntime({ logger, sdkMetrics: options.metrics !== undefined });
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
  if (!options.metrics) return { worker, connection };
  const client = new Client({ connection, namespace: target.namespace });
  const collector = new RunCollector(client, {
    taskQueue: target.taskQueue,
    maxRuns: options.metrics.maxRuns ?? 100,
    timeoutMs: options.metrics.timeoutMs ?? 5000,
  });
  const metrics = await startMetricsServer({
    host: options.metrics.host ?? '127.0.0.1',
    port: options.metrics.port,
    collector,
    sdkMetricsUrl: runtime.sdkMetricsUrl,
    logger,
  });
  logger.info({ url: metrics.url }, 'serving metrics');
  return { worker, connection, metrics };
}

export async function runControlWorker(options: WorkerOptions = {}): Promise<void> {
  const { worker, connection, metrics } = await createControlWorker(options);
  try {
    await worker.run();
  } finally {
    await metrics?.close();
    await closeExecutors();
    await connection.close();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await runControlWorker();
}
