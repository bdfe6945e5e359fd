// What a person has when they start a run from the Web UI, for the browser test: the dev server with its Web UI, a
// local cluster laid out like `keel local up` (under `.keel/local` of the worker's directory, where the tiny-local
// preset's relative paths point), and the control worker on task queue `keel`. The worker's directory is a temp dir
// linking the checkout's `workloads/` and `.venv/`, so the test never touches the checkout's own `.keel/`.
import { existsSync } from 'node:fs';
import { mkdir, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import { startLocalCluster, type LocalCluster } from '../../src/local/cluster.js';
import { freePort } from '../../src/local/net.js';
import { TASK_QUEUE } from '../../workflows/definitions.js';
import { createTestWorker, tempDir } from './pipeline.js';
import { repoRoot, startDevServer } from './temporal.js';
import { modelCache } from './tiny-pipeline.js';

export interface WebUiRig {
  env: TestWorkflowEnvironment;
  /** the Web UI's base URL, e.g. http://127.0.0.1:PORT */
  uiUrl: string;
  /** the dev server's gRPC address (for the CLI: KEEL_TEMPORAL_ADDRESS) */
  address: string;
  cluster: LocalCluster;
  worker: Worker;
  /** stop the control worker (the server, the UI and the cluster stay up); idempotent */
  stopWorker(): Promise<void>;
  stop(): Promise<void>;
}

/** Debian's Chromium (KEEL_CHROMIUM overrides the path). Missing: a clear error, never a silent skip. */
export function chromiumPath(): string {
  const path = process.env.KEEL_CHROMIUM ?? '/usr/bin/chromium';
  if (!existsSync(path)) {
    throw new Error(
      `no Chromium at ${path}: the Web UI test drives Debian's chromium (npm run setup installs it as root: apt-get install chromium), or set KEEL_CHROMIUM`,
    );
  }
  return path;
}

export async function startWebUiRig(options: { nodes?: number; spares?: number } = {}): Promise<WebUiRig> {
  const root = await tempDir('keel-web-ui-');
  for (const name of ['workloads', '.venv']) await symlink(join(repoRoot, name), join(root, name));
  const uiPort = await freePort('127.0.0.1');
  const env = await startDevServer({ uiPort });
  let cluster: LocalCluster | undefined;
  try {
    await mkdir(join(root, '.keel'), { recursive: true });
    cluster = await startLocalCluster({
      root: join(root, '.keel', 'local'),
      repoRoot,
      nodes: options.nodes ?? 4,
      spares: options.spares ?? 1,
      cacheDir: modelCache,
    });
    process.env.KEEL_HF_ENDPOINT = cluster.hubEndpoint;
    const worker = await createTestWorker(env, TASK_QUEUE, { cwd: root });
    const running = worker.run();
    const c = cluster;
    const stopWorker = async () => {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running.catch(() => undefined);
    };
    return {
      env,
      uiUrl: `http://127.0.0.1:${uiPort}`,
      address: env.address,
      cluster: c,
      worker,
      stopWorker,
      stop: async () => {
        await stopWorker();
        await c.stop();
        await env.teardown();
        await rm(root, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await cluster?.stop();
    await env.teardown();
    await rm(root, { recursive: true, force: true });
    throw error;
  }
}
