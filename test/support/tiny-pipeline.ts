// The tiny-local pipeline for end-to-end and fault tests: a local cluster (optionally over sshd), the real dev server
// and worker, a scaled-down run (few rollouts, short intervals and timeouts).
import { nodeProcesses } from '../../src/local/node-processes.js';
import { readFile } from 'node:fs/promises';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import { startLocalCluster, type LocalCluster } from '../../src/local/cluster.js';
import { absolutize } from '../../src/spec/paths.js';
import { deepMerge, resolveSpecOrThrow, presets, type Spec } from '../../src/spec/index.js';
import { createTestWorker, tempDir, uniqueQueue } from './pipeline.js';
import { repoRoot, startDevServer } from './temporal.js';

export interface TinyRig {
  env: TestWorkflowEnvironment;
  cluster: LocalCluster;
  worker: Worker;
  taskQueue: string;
  running: Promise<void>;
  spec(overrides?: Record<string, unknown>): Spec;
  stop(): Promise<void>;
}

/** Models are cached across test files and runs (generation takes a while on 2 cores). */
export const modelCache = join(tmpdir(), 'keel-tiny-model-cache');

export async function startTinyRig(options: {
  ssh?: boolean;
  nodes?: number;
  spares?: number;
  portBase: number;
  /** the tiny model generator's seed (default 0) */
  seed?: number;
  /** extra `temporal server start-dev` arguments (e.g. dynamic config) */
  serverArgs?: string[];
}): Promise<TinyRig> {
  const root = await tempDir('keel-tiny-');
  const env = await startDevServer({ extraArgs: options.serverArgs });
  let cluster: LocalCluster | undefined;
  try {
    cluster = await startLocalCluster({
      root,
      repoRoot,
      nodes: options.nodes ?? 4,
      spares: options.spares ?? 0,
      ssh: options.ssh,
      cacheDir: modelCache,
      seed: options.seed,
    });
    process.env.KEEL_HF_ENDPOINT = cluster.hubEndpoint;
    const taskQueue = uniqueQueue('keel-tiny');
    const worker = await createTestWorker(env, taskQueue);
    const running = worker.run();
    const c = cluster;
    return {
      env,
      cluster: c,
      worker,
      taskQueue,
      running,
      spec: (overrides = {}) => tinySpec(c, options.portBase, overrides),
      stop: async () => {
        // (a test may have stopped it already, to run without a worker for a while)
        if (worker.getState() === 'RUNNING') worker.shutdown();
        await running.catch(() => undefined);
        await c.stop();
        await env.teardown();
        await rm(root, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await cluster?.stop();
    await env.teardown();
    throw error;
  }
}

/** The tiny-local spec on this local cluster, scaled down for tests: few rollouts, intervals of 3, short timeouts. */
export function tinySpec(cluster: LocalCluster, portBase: number, overrides: Record<string, unknown> = {}): Spec {
  const scaled = {
    rollout: { numRollout: 6 },
    ckpt: { saveInterval: 3 },
    eval: { evalInterval: 3 },
    rayHead: { isolateNodes: { portBase } },
    policies: {
      heartbeatTimeout: '10s',
      initialRetryInterval: '1s',
      hang: { startup: '3m', rollout: '45s', checkpointSave: '45s' },
      crashLoop: { maxRestarts: 3, window: '1h' },
    },
  };
  const raw = deepMerge(deepMerge(deepMerge(presets['tiny-local'], cluster.specOverrides()), scaled), overrides);
  return absolutize(resolveSpecOrThrow(raw), repoRoot);
}

/** The tiny trainer's driver processes (train.py, not its bash wrapper) among a local node's processes. */
export async function trainerPids(stateDir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const pid of await nodeProcesses(stateDir)) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes('train.py') && !cmdline.startsWith('bash')) pids.push(pid);
  }
  return pids;
}
