// The local cluster: N nodes on this machine, each on its own loopback address (127.0.1.1, 127.0.1.2, ...), with
// its own sshd when asked (the ssh executor), its own Ray node (started by the pipeline's ray-cluster step), a
// shared directory as baseDir, and a local Hugging Face endpoint serving the tiny FP8 model for the real `hf`.
import { spawn, type ChildProcess } from 'node:child_process';
import { cp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { startSshCluster, type SshCluster } from './sshd.js';
import { signalNode } from './node-processes.js';
import { rayTempDirFor } from '../cluster/ray-commands.js';
import { freePort } from './net.js';

export interface LocalClusterOptions {
  /** where everything lives: shared/, nodes/<node>/, hub/ */
  root: string;
  /** the keel checkout (workloads/tiny, .venv) */
  repoRoot: string;
  nodes: number;
  spares?: number;
  ssh?: boolean;
  /** the tiny model's generator seed (the model is cached per seed) */
  seed?: number;
  /** where generated models are cached (default <root>/../cache) */
  cacheDir?: string;
  log?: (line: string) => void;
}

export interface LocalNode {
  index: number;
  host: string;
  name: string;
  port?: number;
  stateDir: string;
}

export interface LocalCluster {
  nodes: LocalNode[];
  spares: LocalNode[];
  baseDir: string;
  hubEndpoint: string;
  ssh?: SshCluster;
  /** spec overrides that point a tiny-local spec at this cluster */
  specOverrides(): Record<string, unknown>;
  killNode(index: number): Promise<number[]>;
  hangNode(index: number): Promise<number[]>;
  reviveNode(index: number): Promise<void>;
  stop(): Promise<void>;
}

export const tinyRepo = 'keel-tiny/tiny-v3-fp8';
/** The toy task's prompts and evals, served as a dataset repo (what dapo-math-17k and aime-2024 are to R1). */
export const tinyDatasetRepo = 'keel-tiny/toy-addition';

/**
 * The generator version of workloads/tiny/make_model.py (its GENERATOR_VERSION): part of the cache directory's name, so
 * that a checkout with another generator never regenerates, or reads, a model directory another checkout uses.
 */
export const tinyModelGeneration = 4;

/** Generate (or reuse) the tiny FP8 model; returns its directory. */
export async function ensureTinyModel(options: {
  repoRoot: string;
  cacheDir: string;
  seed: number;
  log?: (l: string) => void;
}): Promise<string> {
  const dir = join(options.cacheDir, `tiny-v3-fp8-gen${tinyModelGeneration}-seed${options.seed}`);
  const python = join(options.repoRoot, '.venv', 'bin', 'python');
  options.log?.(
    `tiny model: ${existsSync(join(dir, 'model.safetensors.index.json')) ? 'cached' : 'generating (first run: a minute or two)'}`,
  );
  await mkdir(options.cacheDir, { recursive: true });
  await execa(
    python,
    [join(options.repoRoot, 'workloads', 'tiny', 'make_model.py'), '--out', dir, '--seed', String(options.seed)],
    {
      stdio: 'inherit',
    },
  );
  return dir;
}

async function waitForHttp(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(2000) });
      if (r.status < 500) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} did not answer`);
}

function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null || child.pid === undefined)
    return Promise.resolve();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  return exited.finally(() => clearTimeout(timer));
}

export async function startLocalCluster(options: LocalClusterOptions): Promise<LocalCluster> {
  const log = options.log ?? (() => undefined);
  const baseDir = join(options.root, 'shared');
  const hubRoot = join(options.root, 'hub');
  await mkdir(baseDir, { recursive: true });
  const count = options.nodes + (options.spares ?? 0);
  const all: LocalNode[] = Array.from({ length: count }, (_, i) => ({
    index: i,
    host: `127.0.1.${i + 1}`,
    name: `127.0.1.${i + 1}`,
    stateDir: join(options.root, 'nodes', `127.0.1.${i + 1}`),
  }));

  const modelDir = await ensureTinyModel({
    repoRoot: options.repoRoot,
    cacheDir: options.cacheDir ?? join(options.root, '..', 'cache'),
    seed: options.seed ?? 0,
    log,
  });
  const repoDir = join(hubRoot, tinyRepo);
  if (!existsSync(join(repoDir, 'model.safetensors.index.json'))) {
    await rm(repoDir, { recursive: true, force: true });
    await mkdir(join(repoDir, '..'), { recursive: true });
    await cp(modelDir, repoDir, { recursive: true });
  }
  const datasetDir = join(hubRoot, 'datasets', tinyDatasetRepo);
  if (!existsSync(join(datasetDir, 'eval.jsonl'))) {
    await mkdir(datasetDir, { recursive: true });
    await cp(join(modelDir, 'data', 'train.jsonl'), join(datasetDir, 'train.jsonl'));
    await cp(join(modelDir, 'data', 'eval.jsonl'), join(datasetDir, 'eval.jsonl'));
  }
  const hubPort = await freePort('127.0.0.1');
  const hub = spawn(
    join(options.repoRoot, '.venv', 'bin', 'python'),
    [
      join(options.repoRoot, 'workloads', 'tiny', 'hub.py'),
      '--root',
      hubRoot,
      '--host',
      '127.0.0.1',
      '--port',
      String(hubPort),
    ],
    { stdio: 'ignore' },
  );
  const hubEndpoint = `http://127.0.0.1:${hubPort}`;
  let ssh: SshCluster | undefined;
  try {
    await waitForHttp(`${hubEndpoint}/api/models/${tinyRepo}`, 30_000);
    log(`local hub: ${hubEndpoint} serves ${tinyRepo} and the dataset ${tinyDatasetRepo}`);
    if (options.ssh) {
      ssh = await startSshCluster({ count, baseAddress: '127.0.1.1' });
      ssh.nodes.forEach((n, i) => (all[i]!.port = n.port));
      log(`sshd on ${ssh.nodes.map((n) => `${n.host}:${n.port}`).join(', ')}`);
    }
  } catch (error) {
    await stopChild(hub);
    await ssh?.stop();
    throw error;
  }
  const nodes = all.slice(0, options.nodes);
  const spares = all.slice(options.nodes);
  const toSpec = (n: LocalNode) => ({ host: n.host, gpus: 2, ...(n.port ? { port: n.port } : {}) });

  return {
    nodes,
    spares,
    baseDir,
    hubEndpoint,
    ssh,
    specOverrides: () => ({
      cluster: {
        nodes: nodes.map(toSpec),
        spares: spares.map(toSpec),
        stateDir: join(options.root, 'nodes', '{node}'),
        executor: ssh
          ? {
              kind: 'ssh',
              user: ssh.user,
              identityFile: ssh.identityFile,
              knownHostsFile: ssh.knownHostsFile,
              strictHostKeyChecking: true,
            }
          : { kind: 'local' },
      },
      storage: { baseDir },
    }),
    killNode: async (index) => {
      const node = all[index]!;
      await ssh?.stopNode(index);
      return signalNode(node.stateDir, 'SIGKILL');
    },
    hangNode: async (index) => signalNode(all[index]!.stateDir, 'SIGSTOP'),
    reviveNode: async (index) => {
      await signalNode(all[index]!.stateDir, 'SIGCONT');
      await ssh?.startNode(index);
    },
    stop: async () => {
      for (const node of all) {
        await signalNode(node.stateDir, 'SIGCONT');
        await signalNode(node.stateDir, 'SIGKILL');
        // a node whose state dir path is long keeps Ray's temp dir outside it, under /tmp
        const rayTemp = rayTempDirFor(node.stateDir);
        if (!rayTemp.startsWith(node.stateDir)) await rm(rayTemp, { recursive: true, force: true });
      }
      await stopChild(hub);
      await ssh?.stop();
    },
  };
}

/** A cluster description written by `keel local up` for the other `keel local` commands. */
export async function writeClusterState(file: string, cluster: LocalCluster): Promise<void> {
  await writeFile(
    file,
    JSON.stringify(
      { nodes: cluster.nodes, spares: cluster.spares, baseDir: cluster.baseDir, hubEndpoint: cluster.hubEndpoint },
      null,
      2,
    ),
  );
}

export async function readClusterState(
  file: string,
): Promise<{ nodes: LocalNode[]; spares: LocalNode[]; baseDir: string; hubEndpoint: string }> {
  return JSON.parse(await readFile(file, 'utf8'));
}
