// The control plane as separate processes, as an operator runs it: the Temporal dev server (on a SQLite file) and
// control workers (`node workers/control.ts`) that a test can SIGTERM, SIGKILL and start again. Workers load one
// prebuilt workflow bundle, so a restart takes seconds.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { Client, Connection } from '@temporalio/client';
import { devServerSearchAttributeArgs } from '../../src/search-attributes.js';
import { canConnect, freePort } from '../../src/local/net.js';
import { eventually, uniqueQueue } from './pipeline.js';
import { repoRoot, temporalBinary, workflowBundle } from './temporal.js';

export interface ControlPlane {
  port: number;
  taskQueue: string;
  /**
   * A new control worker process on the task queue (stdout and stderr go to `<root>/worker-<n>.log`), loading the
   * workflow bundle at `bundlePath` (default: today's workflows, bundled once). `script` runs another entry point that
   * starts the control worker (default `workers/control.ts`); `ipc` opens a message channel to it.
   */
  startWorker(options?: {
    bundlePath?: string;
    script?: string;
    ipc?: boolean;
    env?: Record<string, string>;
  }): ResultPromise;
  connect(): Promise<{ client: Client; close: () => Promise<void> }>;
  /** Stop the dev server (SIGTERM) and wait for it. */
  stopServer(): Promise<void>;
  startServer(): Promise<void>;
}

export async function startControlPlane(options: {
  root: string;
  /** environment of every worker (e.g. KEEL_HF_ENDPOINT) */
  workerEnv?: Record<string, string>;
  /** extra `temporal server start-dev` arguments */
  serverArgs?: string[];
}): Promise<ControlPlane> {
  const port = await freePort('127.0.0.1');
  const taskQueue = uniqueQueue('keel-cp');
  const bundlePath = join(options.root, 'workflow-bundle.js');
  await writeFile(bundlePath, (await workflowBundle()).code);
  let server: ResultPromise | undefined;
  let workers = 0;

  const startServer = async (): Promise<void> => {
    server = execa(
      temporalBinary(),
      [
        'server',
        'start-dev',
        '--headless',
        '--ip',
        '127.0.0.1',
        '--port',
        String(port),
        '--db-filename',
        join(options.root, 'temporal.db'),
        ...devServerSearchAttributeArgs(),
        '--log-level',
        'error',
        ...(options.serverArgs ?? []),
      ],
      { reject: false, stdio: 'ignore' },
    );
    await eventually(async () => (await canConnect('127.0.0.1', port)) || undefined, 60_000, 'the dev server');
  };
  await startServer();

  return {
    port,
    taskQueue,
    startServer,
    stopServer: async () => {
      server?.kill('SIGTERM');
      await server;
      server = undefined;
    },
    startWorker: (workerOptions = {}) => {
      workers++;
      return execa('node', ['--import', 'tsx', workerOptions.script ?? 'workers/control.ts'], {
        cwd: repoRoot,
        env: {
          KEEL_TEMPORAL_ADDRESS: `127.0.0.1:${port}`,
          KEEL_TASK_QUEUE: taskQueue,
          KEEL_LOG_LEVEL: 'info',
          KEEL_WORKFLOW_BUNDLE: workerOptions.bundlePath ?? bundlePath,
          ...options.workerEnv,
          ...workerOptions.env,
        },
        ipc: workerOptions.ipc ?? false,
        reject: false,
        // A SIGTERM is for the worker to handle (graceful shutdown), never followed by execa's own SIGKILL.
        forceKillAfterDelay: false,
        stdin: 'ignore',
        stdout: { file: join(options.root, `worker-${workers}.log`) },
        stderr: { file: join(options.root, `worker-${workers}.err.log`) },
      });
    },
    connect: async () => {
      const connection = await Connection.connect({ address: `127.0.0.1:${port}` });
      return { client: new Client({ connection }), close: () => connection.close() };
    },
  };
}
