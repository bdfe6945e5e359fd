// The control worker: every workflow and activity on one task queue (default `keel`; src/client/connection.ts), logs
// through pino (workers/logging.ts: the SDK's and its native core's lines too, secrets redacted), graceful shutdown on
// SIGINT/SIGTERM, and optionally a Prometheus endpoint (docs/metrics.md). Killing it never kills a launched program:
// they run detached with process records.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Client } from '@temporalio/client';
import { bundleWorkflowCode, NativeConnection, Worker } from '@temporalio/worker';
import { allowedEnvNames } from '../activities/env-allowlist.js';
import { closeExecutors, createActivities } from '../activities/index.js';
import { connectionOptions, temporalTarget, type TemporalTarget } from '../src/client/connection.js';
import type { LogOutput } from '../src/log.js';
import { RunCollector } from '../src/metrics/collect.js';
import { startMetricsServer, type MetricsServer } from '../src/metrics/server.js';
import type { TemporalSection } from '../src/spec/schema.js';
import { workerBuildId } from '../src/worker-version.js';
import { installWorkerLogging } from './logging.js';
import { setCurrentWhenPolling } from './deployment.js';

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
  /**
   * Run as a version of this Worker Deployment (Worker Versioning, docs/upgrading.md); default env
   * KEEL_DEPLOYMENT_NAME, else unversioned. `setCurrent` (env KEEL_SET_CURRENT_VERSION=1) makes this worker's version
   * the deployment's current one once it polls.
   */
  deployment?: { name: string; setCurrent?: boolean };
}

export interface ControlWorker {
  worker: Worker;
  connection: NativeConnection;
  target: TemporalTarget;
  metrics?: MetricsServer;
  /** the deployment version it runs as, when versioned */
  version?: { deploymentName: string; buildId: string; setCurrent: boolean };
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
  const deployment = options.deployment ?? deploymentFromEnv(process.env);
  // A versioned worker's build id hashes its bundle: bundle first when no prebuilt bundle is given.
  const code = deployment ? (bundlePath ? await readFile(bundlePath, 'utf8') : await bundle()) : undefined;
  const version = deployment
    ? { deploymentName: deployment.name, buildId: workerBuildId(code!), setCurrent: deployment.setCurrent ?? false }
    : undefined;
  if (version) logger.info(version, 'running as a Worker Deployment version (auto-upgrade)');
  const worker = await Worker.create({
    connection,
    namespace: target.namespace,
    taskQueue: target.taskQueue,
    ...(bundlePath
      ? { workflowBundle: { codePath: bundlePath } }
      : code
        ? { workflowBundle: { code } }
        : { workflowsPath }),
    ...(version
      ? {
          workerDeploymentOptions: {
            useWorkerVersioning: true,
            version: { deploymentName: version.deploymentName, buildId: version.buildId },
            // Runs move to the current version at their next workflow task; every change of workflow code is
            // guarded by patched() (workflows/patches.ts), so a run replays on the new code (docs/upgrading.md).
            defaultVersioningBehavior: 'AUTO_UPGRADE',
          },
        }
      : {}),
    activities: createActivities({
      cwd: options.cwd ?? process.cwd(),
      env: process.env,
      allowEnv: allowedEnvNames(options.allowEnv, process.env),
    }),
    shutdownGraceTime: '10s',
  });
  if (!options.metrics) return { worker, connection, target, version };
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
  return { worker, connection, target, metrics, version };
}

function deploymentFromEnv(env: NodeJS.ProcessEnv): WorkerOptions['deployment'] {
  const name = env.KEEL_DEPLOYMENT_NAME?.trim();
  return name ? { name, setCurrent: env.KEEL_SET_CURRENT_VERSION === '1' } : undefined;
}

async function bundle(): Promise<string> {
  return (await bundleWorkflowCode({ workflowsPath })).code;
}

export async function runControlWorker(options: WorkerOptions = {}): Promise<void> {
  const { worker, connection, metrics, target, version } = await createControlWorker(options);
  try {
    const running = worker.run();
    if (version?.setCurrent) {
      const client = new Client({ connection, namespace: target.namespace });
      void setCurrentWhenPolling(client, version);
    }
    await running;
  } finally {
    await metrics?.close();
    await closeExecutors();
    await connection.close();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await runControlWorker();
}
