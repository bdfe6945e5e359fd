// A real multi-node Ray cluster on this host for tests: one `ray start` per node, each on its own loopback address
// with its own temp dir and explicit free ports, so clusters of parallel test runs never meet.
//
// Teardown never uses `ray stop` (it stops every Ray on the host). Each `ray start` runs in a new process group;
// the daemons it leaves behind keep that group, and Ray's workers (which make their own groups) are their
// descendants. stopNode kills exactly that set, found through /proc.
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { rayHeadStartArgs, rayWorkerStartArgs } from '../../src/cluster/ray-commands.js';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const venvBin = path.join(repoRoot, '.venv', 'bin');

export interface RayNodeSpec {
  ip: string;
  gpus: number;
  cpus?: number;
  resources?: Record<string, number>;
}

export interface StartRayClusterOptions {
  /** The first node is the head. */
  nodes: RayNodeSpec[];
  rayBin?: string;
  /** Extra environment for every Ray process (and so for job entrypoints). */
  env?: Record<string, string>;
  /** Seconds to wait for every node to be ALIVE in the dashboard. Default 90. */
  readyTimeoutSeconds?: number;
  /** Let GCS declare a killed node dead within a few seconds (fault tests). Default true. */
  fastNodeDeath?: boolean;
}

export interface LocalRayNode extends RayNodeSpec {
  tempDir: string;
  /** Process group of the node's `ray start` (its daemons keep it). */
  pgid: number;
  stopped: boolean;
}

export interface LocalRayCluster {
  /** GCS address `ip:port`, for `ray start --address` and RAY_ADDRESS. */
  address: string;
  gcsPort: number;
  dashboardUrl: string;
  nodes: LocalRayNode[];
  /** Kill every process of one node (SIGKILL by default: a lost node). */
  stopNode(ip: string, signal?: NodeJS.Signals): Promise<void>;
  /** Freeze every process of a node (SIGSTOP): a hung node. `resumeNode` sends SIGCONT. */
  pauseNode(ip: string): Promise<number[]>;
  resumeNode(ip: string): Promise<number[]>;
  /** Start a stopped node (or a new worker) again, joined to the head. */
  startNode(spec: RayNodeSpec): Promise<LocalRayNode>;
  /** Kill every node (workers first) and remove the temp dirs. Safe to call twice. */
  stop(): Promise<void>;
}

export async function startRayCluster(options: StartRayClusterOptions): Promise<LocalRayCluster> {
  const [headSpec, ...workerSpecs] = options.nodes;
  if (!headSpec) throw new Error('startRayCluster needs at least one node');
  const rayBin = options.rayBin ?? path.join(venvBin, 'ray');
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'kray-'));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PATH: `${venvBin}:${process.env.PATH ?? ''}`,
    RAY_USAGE_STATS_ENABLED: '0',
    ...(options.fastNodeDeath === false
      ? {}
      : { RAY_health_check_period_ms: '1000', RAY_health_check_failure_threshold: '3' }),
    ...options.env,
  };
  // Ports are reserved together (a port closed and asked for again may come back), and never reused in a cluster.
  const usedPorts = new Set<number>();
  const reservePorts = async (ip: string, count: number) => {
    const ports = await freePorts(ip, count, usedPorts);
    for (const port of ports) usedPorts.add(port);
    return ports;
  };
  const [gcsPort, dashboardPort] = (await reservePorts(headSpec.ip, 2)) as [number, number];
  const nodes: LocalRayNode[] = [];
  let stopped = false;

  const launch = async (spec: RayNodeSpec, head: boolean): Promise<LocalRayNode> => {
    const tempDir = await fs.mkdtemp(path.join(root, 'n'));
    const common = {
      rayBin,
      nodeIp: spec.ip,
      numGpus: spec.gpus,
      numCpus: spec.cpus ?? 2,
      tempDir,
      objectStoreMemoryBytes: 100 * 1024 * 1024,
      extraArgs: nodePortArgs(await reservePorts(spec.ip, 7), head),
      ...(spec.resources ? { resources: spec.resources } : {}),
    };
    const argv = head
      ? rayHeadStartArgs({ ...common, port: gcsPort, dashboardHost: spec.ip, dashboardPort })
      : rayWorkerStartArgs({ ...common, headIp: headSpec.ip, port: gcsPort });
    const pgid = await runDetached(argv, env, path.join(tempDir, 'ray-start.log'));
    const node: LocalRayNode = { ...spec, tempDir, pgid, stopped: false };
    nodes.push(node);
    return node;
  };

  const stopNode = async (ip: string, signal: NodeJS.Signals = 'SIGKILL') => {
    for (const node of nodes.filter((candidate) => candidate.ip === ip && !candidate.stopped)) {
      await killProcessGroupTree(node.pgid, signal);
      node.stopped = true;
    }
  };

  const signalNode = async (ip: string, signal: NodeJS.Signals): Promise<number[]> => {
    const signalled: number[] = [];
    for (const node of nodes.filter((candidate) => candidate.ip === ip && !candidate.stopped)) {
      for (const pid of await processGroupTree(node.pgid)) {
        try {
          process.kill(pid, signal);
          signalled.push(pid);
        } catch {
          // Exited meanwhile.
        }
      }
    }
    return signalled;
  };

  const cluster: LocalRayCluster = {
    address: `${headSpec.ip}:${gcsPort}`,
    gcsPort,
    dashboardUrl: `http://${headSpec.ip}:${dashboardPort}`,
    nodes,
    stopNode,
    pauseNode: (ip) => signalNode(ip, 'SIGSTOP'),
    resumeNode: (ip) => signalNode(ip, 'SIGCONT'),
    startNode: async (spec) => {
      const node = await launch(spec, false);
      await waitForAliveNodes(cluster.dashboardUrl, [spec.ip], options.readyTimeoutSeconds ?? 90);
      return node;
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      for (const node of [...nodes].reverse()) await stopNode(node.ip);
      await fs.rm(root, { recursive: true, force: true, maxRetries: 3 });
    },
  };

  try {
    await launch(headSpec, true);
    for (const spec of workerSpecs) await launch(spec, false);
    await waitForAliveNodes(
      cluster.dashboardUrl,
      options.nodes.map((node) => node.ip),
      options.readyTimeoutSeconds ?? 90,
    );
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}

/** Fixed free ports for everything Ray would otherwise take at a default (52365, 10001...) shared by all clusters. */
function nodePortArgs(ports: number[], head: boolean): string[] {
  const [nodeManager, objectManager, agentHttp, agentGrpc, runtimeEnvAgent, metrics, client] = ports;
  const args = [
    `--node-manager-port=${nodeManager}`,
    `--object-manager-port=${objectManager}`,
    `--dashboard-agent-listen-port=${agentHttp}`,
    `--dashboard-agent-grpc-port=${agentGrpc}`,
    `--runtime-env-agent-port=${runtimeEnvAgent}`,
    `--metrics-export-port=${metrics}`,
  ];
  if (head) args.push(`--ray-client-server-port=${client}`);
  return args;
}

/** Run `ray start` in a new process group; resolve with the group id once it has exited 0. */
async function runDetached(argv: string[], env: NodeJS.ProcessEnv, logFile: string): Promise<number> {
  const log = await fs.open(logFile, 'w');
  try {
    const child = spawn(argv[0]!, argv.slice(1), { env, detached: true, stdio: ['ignore', log.fd, log.fd] });
    const pgid = child.pid;
    if (pgid === undefined) throw new Error(`cannot spawn ${argv[0]}`);
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', resolve);
    });
    if (code !== 0) {
      await killProcessGroupTree(pgid, 'SIGKILL');
      const output = await fs.readFile(logFile, 'utf8');
      throw new Error(`${argv.slice(0, 3).join(' ')} exited ${code}:\n${output.slice(-3000)}`);
    }
    return pgid;
  } finally {
    await log.close();
  }
}

async function waitForAliveNodes(dashboardUrl: string, ips: string[], timeoutSeconds: number): Promise<void> {
  const deadline = Date.now() + timeoutSeconds * 1000;
  let seen = '';
  while (Date.now() < deadline) {
    try {
      const response = await fetch(`${dashboardUrl}/api/v0/nodes?limit=1000`, { signal: AbortSignal.timeout(5000) });
      const body = (await response.json()) as { data?: { result?: { result?: { node_ip: string; state: string }[] } } };
      const alive = new Set((body.data?.result?.result ?? []).filter((n) => n.state === 'ALIVE').map((n) => n.node_ip));
      seen = [...alive].join(', ');
      if (ips.every((ip) => alive.has(ip))) return;
    } catch {
      // The dashboard is still starting.
    }
    await sleep(500);
  }
  throw new Error(`Ray nodes ${ips.join(', ')} not all alive after ${timeoutSeconds}s (alive: ${seen || 'none'})`);
}

export async function freePort(host: string): Promise<number> {
  return (await freePorts(host, 1))[0]!;
}

/** `count` distinct free ports, held open together while chosen so none is handed out twice. */
export async function freePorts(
  host: string,
  count: number,
  exclude: ReadonlySet<number> = new Set(),
): Promise<number[]> {
  const servers: net.Server[] = [];
  const ports: number[] = [];
  try {
    while (ports.length < count) {
      const server = net.createServer();
      servers.push(server);
      const port = await new Promise<number>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, host, () => resolve((server.address() as net.AddressInfo).port));
      });
      if (!exclude.has(port)) ports.push(port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  }
}

interface ProcEntry {
  pid: number;
  ppid: number;
  pgid: number;
  state: string;
  zombie: boolean;
}

async function readProcessTable(): Promise<ProcEntry[]> {
  const entries: ProcEntry[] = [];
  for (const name of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = await fs.readFile(`/proc/${name}/stat`, 'utf8');
      // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so split after the last ')'.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const state = fields[0] ?? '?';
      entries.push({
        pid: Number(name),
        ppid: Number(fields[1]),
        pgid: Number(fields[2]),
        state,
        zombie: state === 'Z',
      });
    } catch {
      // The process exited while we looked.
    }
  }
  return entries;
}

/** The one-letter state of each pid (`T` when stopped); a pid that is gone is absent. */
export async function processStates(pids: number[]): Promise<Map<number, string>> {
  const wanted = new Set(pids);
  const table = await readProcessTable();
  return new Map(table.filter((entry) => wanted.has(entry.pid)).map((entry) => [entry.pid, entry.state]));
}

/** The live members of a process group, the live processes of `known`, and all their descendants. */
export async function processGroupTree(pgid: number, known: ReadonlySet<number> = new Set()): Promise<number[]> {
  const table = (await readProcessTable()).filter((entry) => !entry.zombie);
  const members = new Set(
    table.filter((entry) => entry.pgid === pgid || known.has(entry.pid)).map((entry) => entry.pid),
  );
  let grew = true;
  while (grew) {
    grew = false;
    for (const entry of table) {
      if (!members.has(entry.pid) && members.has(entry.ppid)) {
        members.add(entry.pid);
        grew = true;
      }
    }
  }
  return [...members];
}

/**
 * Kill a group and its descendants until none is left. Every pid seen is remembered, so a child orphaned by its
 * parent's death (re-parented away from the tree) is still killed.
 */
export async function killProcessGroupTree(pgid: number, signal: NodeJS.Signals): Promise<void> {
  const known = new Set<number>();
  for (let round = 0; round < 25; round += 1) {
    const pids = await processGroupTree(pgid, known);
    if (pids.length === 0) return;
    for (const pid of pids) {
      known.add(pid);
      try {
        process.kill(pid, round < 10 ? signal : 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    await sleep(200);
  }
  throw new Error(`processes of group ${pgid} survived SIGKILL: ${(await processGroupTree(pgid, known)).join(', ')}`);
}
