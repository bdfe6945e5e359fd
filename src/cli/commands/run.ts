// keel server | worker | start | status | watch | pause | resume | cancel | stop-after-checkpoint | list
import { Option, type Command } from 'commander';
import { resolve } from 'node:path';
import { logFormats, type LogFormat } from '../../log.js';
import { execa } from 'execa';
import { mkdir } from 'node:fs/promises';
import { isIP } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { KeelClient } from '../../client/index.js';
import { z } from 'zod';
import {
  describeTarget,
  RunAlreadyLiveError,
  temporalTarget,
  SteeringRefusedError,
  type RunStatus,
  type SteeringAnswer,
} from '../../client/index.js';
import { absolutize } from '../../spec/paths.js';
import { devServerSearchAttributeArgs } from '../../search-attributes.js';
import { loadSpecOrExit, withSpecOptions, type SpecOptions } from './spec.js';
import { watchRun } from '../watch.js';
import {
  connectionFlags,
  exitOnConfigError,
  flagTarget,
  specSection,
  withClient,
  type ServerOptions,
} from '../connection-flags.js';

export { connectionFlags, withClient, type ServerOptions } from '../connection-flags.js';
import type { MetricsOptions } from '../../../workers/control.js';
import { formatRestart, formatTotals, recoveryTotals, restartAccounts } from '../../progress/recovery.js';
import { printable } from '../printable.js';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

interface WorkerCommandOptions {
  bundle?: string;
  logFormat: LogFormat;
  logFile?: string;
  metricsPort?: string;
  metricsHost: string;
  metricsMaxRuns: string;
  allowEnv?: string[];
  deploymentName?: string;
  setCurrent?: boolean;
}

/** `--deployment-name`/`--set-current` (else env KEEL_DEPLOYMENT_NAME/KEEL_SET_CURRENT_VERSION): Worker Versioning. */
function deploymentOrExit(options: WorkerCommandOptions): { name: string; setCurrent: boolean } | undefined {
  const name = (options.deploymentName ?? process.env.KEEL_DEPLOYMENT_NAME)?.trim();
  const setCurrent = options.setCurrent ?? process.env.KEEL_SET_CURRENT_VERSION === '1';
  if (!name) {
    if (options.setCurrent) {
      console.error('keel worker: --set-current needs --deployment-name (or KEEL_DEPLOYMENT_NAME)');
      process.exit(2);
    }
    return undefined;
  }
  // Temporal writes a version as `<deployment>.<build id>`: a deployment name holds no dot.
  if (/[.\s]/.test(name) || name.length > 200) {
    console.error(
      `keel worker: --deployment-name ${JSON.stringify(name)} must be at most 200 characters, no dot or space`,
    );
    process.exit(2);
  }
  return { name, setCurrent };
}

const portSchema = z.coerce.number().int().min(0).max(65535);
const maxRunsSchema = z.coerce.number().int().min(1).max(100_000);

/** The metrics flags, checked; exits 2 naming the flag when one is wrong. */
function metricsOptionsOrExit(options: WorkerCommandOptions): MetricsOptions | undefined {
  const fail = (flag: string, value: string, want: string): never => {
    console.error(`keel worker: ${flag} ${JSON.stringify(value)} is not ${want}`);
    process.exit(2);
  };
  if (options.metricsPort === undefined) return undefined;
  const port = portSchema.safeParse(options.metricsPort);
  if (!port.success || options.metricsPort.trim() === '')
    fail('--metrics-port', options.metricsPort, 'a port (0-65535)');
  const maxRuns = maxRunsSchema.safeParse(options.metricsMaxRuns);
  if (!maxRuns.success) fail('--metrics-max-runs', options.metricsMaxRuns, 'a whole number of at least 1');
  if (isIP(options.metricsHost) === 0) fail('--metrics-host', options.metricsHost, 'an IP address (e.g. 0.0.0.0)');
  return { port: port.data!, host: options.metricsHost, maxRuns: maxRuns.data! };
}

export function formatStatus(status: RunStatus): string {
  const lines = [`${status.workflowId}: ${status.runStatus}${status.pipeline ? ` (${status.pipeline.phase})` : ''}`];
  const a = status.pipeline?.allocation;
  if (a) {
    const seconds = a.pendingMs ? (a.pendingMs / 1000).toFixed(1) : undefined;
    const waited =
      seconds === undefined
        ? ''
        : a.state === 'allocating'
          ? `, ${a.jobState ?? 'waiting'} for ${seconds} s in the queue`
          : `, waited ${seconds} s in the queue`;
    lines.push(
      `  slurm      job ${a.jobId ?? '-'} (${a.jobName}) ${a.state}${a.adopted ? ', adopted' : ''}${waited}` +
        `${a.pendingReason ? ` (${a.pendingReason})` : ''}`,
    );
    if (a.nodes?.length) lines.push(`    nodes ${a.nodes.map((n) => `${n.name} ${n.address}`).join(', ')}`);
  }
  for (const step of status.pipeline?.steps ?? []) {
    const times =
      step.startedAt && step.endedAt
        ? ` ${((Date.parse(step.endedAt) - Date.parse(step.startedAt)) / 1000).toFixed(1)} s`
        : '';
    lines.push(
      `  ${step.id.padEnd(10)} ${step.state.padEnd(10)} attempts ${step.attempts}${times}${step.reason ? `  ${step.reason}` : ''}`,
    );
  }
  if (status.pipeline?.stopAfterCheckpoint) lines.push('  training stops at its next checkpoint (requested)');
  if (status.pipeline?.cancelReason) lines.push(`  cancel requested: ${status.pipeline.cancelReason}`);
  const t = status.training;
  if (t) {
    lines.push(
      `  training   ${t.phase}, rollout ${t.lastRollout ?? '-'} of ${t.numRollout}, job ${t.jobId ?? '-'}, restarts ${t.restarts}`,
    );
    for (const c of t.checkpoints)
      lines.push(`    checkpoint ${c.iteration}${c.evalScore !== undefined ? `  eval ${c.evalScore.toFixed(3)}` : ''}`);
    if (t.waitingFor) lines.push(`    waiting for nodes: ${t.waitingFor}`);
    if (t.jobStop && t.jobStop.how !== 'stopped' && t.jobStop.how !== 'ended')
      lines.push(
        `    job ${t.jobStop.jobId} ${t.jobStop.how === 'not-stopped' ? 'NOT STOPPED' : t.jobStop.how}: ${t.jobStop.detail}`,
      );
    if (t.retention)
      lines.push(
        `    retention keeps ${t.retention.keep.join(', ') || '-'}` +
          (t.retention.deleted?.length ? `; deleted ${t.retention.deleted.join(', ')}` : '') +
          `; deletes next ${t.retention.deleteNext.join(', ') || 'none'}`,
      );
    const accounts = restartAccounts(t);
    for (const f of t.failures) {
      lines.push(`    failure ${f.at} ${f.kind}: ${f.message.split('\n')[0]}`);
      const account = accounts.find((a) => a.at === f.at && a.kind === f.kind);
      if (account) lines.push(`      recovery: ${formatRestart(account)}`);
    }
    const trainStep = status.pipeline?.steps.find((step) => step.kind === 'train');
    if (accounts.length && trainStep?.startedAt) {
      const end = trainStep.endedAt ?? new Date().toISOString();
      lines.push(`    ${formatTotals(recoveryTotals(t, trainStep.startedAt, end))}`);
    }
  }
  if (status.failure) lines.push(`  failed: ${status.failure}`);
  if (status.source === 'history') {
    const why = status.workerPolling === false ? ': no worker polls its task queue' : '';
    const gaps = status.partial ? `; not recorded there: ${status.partial}` : '';
    lines.push(`  (read from the run's history${why}${gaps})`);
  }
  return printable(lines.join('\n'));
}

export function registerRunCommands(program: Command): void {
  program
    .command('server')
    .description('run the Temporal dev server (SQLite file, Web UI, the Keel* search attributes) in the foreground')
    .option('--db <file>', 'SQLite file', '.keel/temporal.db')
    .option('--ip <ip>', 'address to bind', '127.0.0.1')
    .option('--port <port>', 'frontend port', '7233')
    .option('--ui-port <port>', 'Web UI port', '8233')
    .action(async (options: { db: string; ip: string; port: string; uiPort: string }) => {
      await mkdir('.keel', { recursive: true });
      const args = ['server', 'start-dev', '--ip', options.ip, '--port', options.port, '--ui-port', options.uiPort];
      args.push('--db-filename', options.db, ...devServerSearchAttributeArgs(), '--log-level', 'warn');
      const ui = `http://${options.ip}:${options.uiPort}`;
      console.log(`Temporal dev server on ${options.ip}:${options.port}; Web UI ${ui}`);
      // keel's runs alone; add the Keel* columns with Configure Columns (docs/operations.md, "The Web UI")
      console.log(
        `keel's runs: ${ui}/namespaces/default/workflows?query=${encodeURIComponent('WorkflowType = "pipeline"')}`,
      );
      await execa(`${repoRoot}.venv/bin/temporal`, args, { stdio: 'inherit' });
    });

  connectionFlags(program.command('worker'))
    .description('run the control worker (task queue keel unless the connection says otherwise)')
    .option('--bundle <file>', 'prebuilt workflow bundle (npm run bundle writes .keel/workflow-bundle.js)')
    .addOption(
      new Option('--log-format <format>', "its logs (keel's and the Temporal SDK's): JSON lines or pretty text")
        .choices(logFormats)
        .default('json'),
    )
    .option('--log-file <file>', 'write the logs to this file (default: stdout)')
    .option(
      '--metrics-port <port>',
      "serve Prometheus metrics on this port at /metrics: the Temporal SDK's and each run's (docs/metrics.md)",
    )
    .option('--metrics-host <ip>', 'address the metrics endpoint listens on', '127.0.0.1')
    .option('--metrics-max-runs <n>', 'the most runs one scrape reports', '100')
    .option(
      '--allow-env <names...>',
      'environment variables a spec may name beyond their own kind (secretEnv, hfTokenEnv, hfEndpointEnv, urlEnv); ' +
        'also KEEL_ALLOW_ENV (docs/security.md)',
    )
    .option(
      '--deployment-name <name>',
      "run as a version of this Worker Deployment (Worker Versioning; build id = keel's version and the bundle's " +
        'hash); also KEEL_DEPLOYMENT_NAME (docs/upgrading.md)',
    )
    .option(
      '--set-current',
      "make this worker's version the deployment's current one once it polls (the first version, or a deploy without " +
        'ramping); also KEEL_SET_CURRENT_VERSION=1',
    )
    .action(async (options: ServerOptions & WorkerCommandOptions) => {
      const metrics = metricsOptionsOrExit(options);
      const deployment = deploymentOrExit(options);
      const { runControlWorker } = await import('../../../workers/control.js');
      const spec = await specSection(options);
      const target = temporalTarget(flagTarget(options), process.env, spec);
      console.error(`keel worker: ${describeTarget(target)}; Ctrl-C stops it (launched programs keep running)`);
      await runControlWorker({
        target: flagTarget(options),
        spec,
        bundlePath: options.bundle,
        logs: { format: options.logFormat, destination: options.logFile ? resolve(options.logFile) : 1 },
        metrics,
        allowEnv: options.allowEnv,
        deployment,
      }).catch(exitOnConfigError);
    });

  connectionFlags(withSpecOptions(program.command('start')), { specFlag: false })
    .description('start a run; prints its workflow id (a second live run of the same name is refused)')
    .option('--watch', 'follow its progress until it ends')
    .action(async (file: string | undefined, options: SpecOptions & ServerOptions & { watch?: boolean }) => {
      const spec = absolutize(await loadSpecOrExit(file, options), process.cwd());
      await withClient(
        options,
        async (client) => {
          try {
            const { workflowId } = await client.start(spec);
            console.log(workflowId);
            if (options.watch) process.exitCode = await watchRun(client, workflowId);
          } catch (error) {
            if (error instanceof RunAlreadyLiveError) {
              console.error(`keel: ${error.message}`);
              process.exit(3);
            }
            throw error;
          }
        },
        spec.temporal,
      );
    });

  connectionFlags(program.command('status'))
    .description('steps, attempts, training progress and checkpoints of a run')
    .argument('<id>', 'workflow id (keel-<name>)')
    .option('--json', 'print JSON')
    .action(async (id: string, options: ServerOptions & { json?: boolean }) => {
      await withClient(options, async (client) => {
        const status = await client.status(id);
        console.log(options.json ? JSON.stringify(status, null, 2) : formatStatus(status));
      });
    });

  connectionFlags(program.command('watch'))
    .description('live progress of a run until it ends')
    .argument('<id>', 'workflow id')
    .action(async (id: string, options: ServerOptions) => {
      await withClient(options, async (client) => {
        process.exitCode = await watchRun(client, id);
      });
    });

  const steer: [string, string, (c: KeelClient, id: string) => Promise<SteeringAnswer>][] = [
    ['pause', 'running steps finish; no new step starts', (c, id) => c.pause(id)],
    ['resume', 'resume a paused run (or one paused by the crash-loop guard)', (c, id) => c.resume(id)],
    ['cancel', 'stop what keel launched for the run, then end it CANCELED', (c, id) => c.cancel(id, 'keel cancel')],
    ['stop-after-checkpoint', 'stop training cleanly after its next checkpoint', (c, id) => c.stopAfterCheckpoint(id)],
  ];
  for (const [name, description, fn] of steer) {
    connectionFlags(program.command(name))
      .description(`${description} (the run answers: accepted, or refused with the reason: exit 3)`)
      .argument('<id>', 'workflow id')
      .action(async (id: string, options: ServerOptions) => {
        await withClient(options, async (client) => {
          try {
            const answer = await fn(client, id);
            console.log(`${name}: accepted by ${id}: ${answer.message}`);
          } catch (error) {
            if (!(error instanceof SteeringRefusedError)) throw error;
            console.error(error.message);
            process.exitCode = 3;
          }
        });
      });
  }

  connectionFlags(program.command('list'))
    .description('pipeline runs on the server')
    .action(async (options: ServerOptions) => {
      await withClient(options, async (client) => {
        for (const run of await client.list()) {
          console.log(
            `${run.workflowId.padEnd(32)} ${run.status.padEnd(11)} ${(run.phase ?? '').padEnd(12)} ${run.startTime.toISOString()}`,
          );
        }
      });
    });
}
