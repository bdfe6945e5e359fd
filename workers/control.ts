// The control worker: every workflow and activity on one task queue (default `keel`; src/client/connection.ts), logs
// through pino (workers/logging.ts: the SDK's and its native core's lines too, secrets redacted), graceful shutdown on
// SIGINT/SIGTERM, and optionally a Prometheus endpoint (docs/metrics.md). Killing it never kills a launched program:
// they run detached with process records.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Client } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { allowedEnvNames } from '../activities/env-allowlist.js';
import { closeExecutors, createActivities } from '../activities/index.js';
import { connectionOptions, temporalTarget, type TemporalTarget } from '../src/client/connection.js';
import type { LogOutput } from '../src/log.js';
import { RunCollector } from '../src/metrics/collect.js';
import { startMetricsServer, type MetricsServer } from '../src/metrics/server.js';
import type { TemporalSection } from '../src/spec/schema.js';
import { installWorkerLogging } from './logging.js';

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
  /** serve Prometheus metrics: the SDK's own and keel's per-run figures */
  metrics?: MetricsOptions;
  /** environment variables a spec may name beyond each field's own kind (also KEEL_ALLOW_ENV) */
  allowEnv?: string[];
}

export interface ControlWorker {
  worker: Worker;
  connection: NativeConnection;
  target: TemporalTarget;
  metrics?: MetricsServer;
}

export async function createControlWorker(options: WorkerOptions = {}): Promise<ControlWorker> {
  // Before any connection: the runtime is process-wide and fixed once a connection exists.
  const { logger, runtime } = await installWorkerLogging(options.logs, options.logLevel ?? process.env.KEEL_LOG_LEVEL, {
    sdkMetrics: options.metrics !== undefined,
  });
  const target = temporalTarget(options.target, process.env, options.spec);
  const connection = await NativeConnection.connect(await connectionOptions(target));
  const bundlePath = options.bundlePath ?? process.env.KEEL_WORKFLOW_BUNDLE;
  if (bundlePath && !existsSync(bundlePath)) throw new Error(`no workflow bundle at ${bundlePath}: run npm run bundle`);
  const worker = await Worker.create({
    connection,
    namespace: target.namespace,
    taskQueue: target.taskQueue,
    ...(bundlePath ? { workflowBundle: { codePath: bundlePath } } : { workflowsPath }),
    activities: createActivities({
      cwd: options.cwd ?? process.cwd(),
      env: process.env,
      allowEnv: allowedEnvNames(options.allowEnv, process.env),
    }),
    shutdownGraceTime: '10s',
  });
  if (!options.metrics) return { worker, connection, target };
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
  return { worker, connection, target, metrics };
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
