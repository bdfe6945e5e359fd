// `keel demo`: the whole tiny-local pipeline on this machine. Starts the Temporal dev server with its Web UI (or uses
// the one already running), a local cluster, the control worker; starts the run, shows live progress, prints the
// Web UI link and ends with a summary.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { KeelClient, RunAlreadyLiveError, type RunStatus } from '../client/index.js';
import { absolutize } from '../spec/paths.js';
import { deepMerge, resolveSpecOrThrow } from '../spec/resolve.js';
import { presets } from '../spec/presets.js';
import { devServerSearchAttributeArgs } from '../search-attributes.js';
import { watchRun } from '../cli/watch.js';
import { startLocalCluster } from './cluster.js';
import { startLocalSlurm } from './slurm.js';
import { canConnect } from './net.js';
import { demoLogOutput, describeLogOutput, type DemoLogFlags } from './demo-logs.js';

export interface DemoOptions {
  repoRoot: string;
  overrides?: Record<string, unknown>;
  ssh?: boolean;
  /** a real local Slurm cluster over the nodes: the run holds one allocation, every program a step of it */
  slurm?: boolean;
  /** keep the Temporal server (and its Web UI) up after the run until Ctrl-C */
  keepUi?: boolean;
  port?: number;
  uiPort?: number;
  seed?: number;
  /** --log-format / --log-file (src/local/demo-logs.ts) */
  logs?: DemoLogFlags;
}

async function startServer(repoRoot: string, port: number, uiPort: number): Promise<ChildProcess | undefined> {
  if (await canConnect('127.0.0.1', port)) return undefined;
  await mkdir(join(repoRoot, '.keel'), { recursive: true });
  const args = ['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(port), '--ui-port', String(uiPort)];
  args.push(
    '--db-filename',
    join(repoRoot, '.keel', 'temporal.db'),
    ...devServerSearchAttributeArgs(),
    '--log-level',
    'error',
  );
  const server = spawn(join(repoRoot, '.venv', 'bin', 'temporal'), args, { stdio: 'ignore' });
  for (let i = 0; i < 300 && !(await canConnect('127.0.0.1', port)); i++) await new Promise((r) => setTimeout(r, 100));
  return server;
}

export function summarize(status: RunStatus): string {
  const lines = ['', `summary of ${status.workflowId}: ${status.runStatus}`];
  for (const step of status.pipeline?.steps ?? []) {
    const seconds =
      step.startedAt && step.endedAt ? (Date.parse(step.endedAt) - Date.parse(step.startedAt)) / 1000 : undefined;
    lines.push(
      `  ${step.id.padEnd(9)} ${step.state.padEnd(10)} ${seconds === undefined ? '' : `${seconds.toFixed(1)} s`}${step.state === 'skipped' ? `  (${step.reason})` : ''}`,
    );
  }
  const t = status.training;
  if (t) {
    lines.push(`  training: ${t.lastRollout === undefined ? 0 : t.lastRollout + 1} rollouts, ${t.restarts} restart(s)`);
    for (const e of t.evals) {
      const ckpt = t.checkpoints.find((c) => c.iteration === e.rollout);
      lines.push(
        `    rollout ${String(e.rollout).padStart(4)}  eval ${e.score.toFixed(3)}${ckpt ? '  checkpoint' : ''}`,
      );
    }
  }
  if (status.failure) lines.push(`  failed: ${status.failure}`);
  return lines.join('\n');
}

export async function runDemo(options: DemoOptions): Promise<number> {
  const port = options.port ?? 7233;
  const uiPort = options.uiPort ?? 8233;
  const say = (line: string) => console.log(`[keel demo] ${line}`);
  const logs = demoLogOutput(options.logs ?? {}, options.repoRoot);
  say(describeLogOutput(logs.output));
  const server = await startServer(options.repoRoot, port, uiPort);
  say(
    server
      ? `Temporal dev server started; Web UI http://127.0.0.1:${uiPort}`
      : `using the Temporal server on 127.0.0.1:${port}`,
  );
  // Another seed is another model: its own storage, so it never resumes the checkpoints of a different model.
  const root = join(
    options.repoRoot,
    '.keel',
    `local${options.slurm ? '-slurm' : ''}${options.seed ? `-seed${options.seed}` : ''}`,
  );
  const cluster = await startLocalCluster({
    root,
    repoRoot: options.repoRoot,
    nodes: 4,
    spares: 1,
    ssh: options.ssh,
    seed: options.seed,
    log: say,
  });
  process.env.KEEL_HF_ENDPOINT = cluster.hubEndpoint;
  const slurm = options.slurm
    ? await startLocalSlurm({ dir: join(root, 'slurm'), nodes: 5, gpusPerNode: 2, log: say }).catch(
        async (error: unknown) => {
          await cluster.stop();
          throw error;
        },
      )
    : undefined;
  const slurmOverrides = slurm
    ? {
        cluster: {
          executor: { kind: 'slurm', slurmConf: slurm.conf },
          stateDir: join(root, 'nodes', '{node}'),
        },
      }
    : {};
  // The worker's own logs would drown the progress display: they go to a file unless asked for on the terminal.
  const { createControlWorker } = await import('../../workers/control.js');
  const { worker, connection } = await createControlWorker({
    target: { address: `127.0.0.1:${port}` },
    cwd: options.repoRoot,
    logs: logs.output,
    logLevel: logs.level,
  });
  const running = worker.run();
  running.catch((error: unknown) =>
    say(`the control worker stopped: ${error instanceof Error ? error.message : String(error)}`),
  );
  const client = await KeelClient.connect({ address: `127.0.0.1:${port}` });
  let code = 1;
  try {
    const raw = deepMerge(
      deepMerge(deepMerge(presets['tiny-local'], cluster.specOverrides()), slurmOverrides),
      options.overrides ?? {},
    );
    const spec = absolutize(resolveSpecOrThrow(raw), options.repoRoot);
    let workflowId = 'keel-tiny-local';
    try {
      ({ workflowId } = await client.start(spec));
      say(`started ${workflowId}`);
    } catch (error) {
      if (!(error instanceof RunAlreadyLiveError)) throw error;
      say(`${workflowId} is already running: following it`);
    }
    say(`watch it in the Web UI: http://127.0.0.1:${uiPort}/namespaces/default/workflows/${workflowId}`);
    code = await watchRun(client, workflowId);
    console.log(summarize(await client.status(workflowId)));
    if (code !== 0) say(`what went wrong is above; the details are in the ${describeLogOutput(logs.output)}`);
  } finally {
    await client.close();
    worker.shutdown();
    await running.catch(() => undefined);
    await connection.close();
    await slurm?.stop();
    await cluster.stop();
    if (server && options.keepUi) {
      say(`the Web UI stays up at http://127.0.0.1:${uiPort} -- Ctrl-C to stop it`);
      await new Promise<void>((resolve) => server.once('exit', () => resolve()));
    } else if (server) {
      server.kill('SIGTERM');
    }
  }
  return code;
}
