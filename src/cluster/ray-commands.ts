// argv of `ray start` / `ray stop`, as slime's launch scripts write them; options only ever append.
//   head:   ray start --head --node-ip-address $MASTER_ADDR --num-gpus 8 --disable-usage-stats
//           --dashboard-host=0.0.0.0 --dashboard-port=8265
//   worker: ray start --address=$MASTER_ADDR:6379 --num-gpus 8 --node-ip-address $WORKER_IP --disable-usage-stats
import { createHash } from 'node:crypto';
import { join } from 'node:path';

export const defaultGcsPort = 6379;
export const defaultDashboardPort = 8265;

interface CommonStartOptions {
  /** The `ray` executable (e.g. a venv's `bin/ray`). Default `ray`. */
  rayBin?: string;
  nodeIp: string;
  numGpus?: number;
  numCpus?: number;
  /** Ray's root temp dir for this node (sessions, logs, sockets). */
  tempDir?: string;
  /** Custom resources, e.g. `{ "node_rank_0": 1 }`. */
  resources?: Record<string, number>;
  objectStoreMemoryBytes?: number;
  /** Extra flags appended verbatim as argv elements (e.g. fixed agent ports on a shared host). */
  extraArgs?: string[];
}

export interface HeadStartOptions extends CommonStartOptions {
  /** GCS port; the contract uses Ray's default (6379) and omits the flag. */
  port?: number;
  dashboardHost?: string;
  dashboardPort?: number;
}

export interface WorkerStartOptions extends CommonStartOptions {
  headIp: string;
  port?: number;
}

export function rayHeadStartArgs(options: HeadStartOptions): string[] {
  const argv = [
    options.rayBin ?? 'ray',
    'start',
    '--head',
    '--node-ip-address',
    options.nodeIp,
    '--num-gpus',
    String(options.numGpus ?? 8),
    '--disable-usage-stats',
    `--dashboard-host=${options.dashboardHost ?? '0.0.0.0'}`,
    `--dashboard-port=${options.dashboardPort ?? defaultDashboardPort}`,
  ];
  if (options.port !== undefined && options.port !== defaultGcsPort) argv.push(`--port=${options.port}`);
  return [...argv, ...commonTail(options)];
}

export function rayWorkerStartArgs(options: WorkerStartOptions): string[] {
  const argv = [
    options.rayBin ?? 'ray',
    'start',
    `--address=${options.headIp}:${options.port ?? defaultGcsPort}`,
    '--num-gpus',
    String(options.numGpus ?? 8),
    '--node-ip-address',
    options.nodeIp,
    '--disable-usage-stats',
  ];
  return [...argv, ...commonTail(options)];
}

/** `ray stop` stops every Ray process of the host (all clusters): only for hosts keel owns. */
export function rayStopArgs(options: { rayBin?: string; force?: boolean } = {}): string[] {
  return [options.rayBin ?? 'ray', 'stop', ...(options.force ? ['--force'] : [])];
}

/** The dashboard (and Jobs API) URL that `ray job submit --address` would use. */
export function dashboardUrl(host: string, port: number = defaultDashboardPort): string {
  const bracketed = host.includes(':') ? `[${host}]` : host;
  return `http://${bracketed}:${port}`;
}

function commonTail(options: CommonStartOptions): string[] {
  const argv: string[] = [];
  if (options.numCpus !== undefined) argv.push(`--num-cpus=${options.numCpus}`);
  if (options.tempDir !== undefined) argv.push(`--temp-dir=${options.tempDir}`);
  if (options.resources && Object.keys(options.resources).length > 0) {
    argv.push(`--resources=${JSON.stringify(options.resources)}`);
  }
  if (options.objectStoreMemoryBytes !== undefined)
    argv.push(`--object-store-memory=${options.objectStoreMemoryBytes}`);
  return [...argv, ...(options.extraArgs ?? [])];
}

/**
 * Ray's temp dir for a node whose state lives in `nodeStateDir`: `<nodeStateDir>/ray`, unless that is too long. Ray
 * puts AF_UNIX sockets under `<temp>/session_<date>_<time>_<pid>/sockets/<name>` (66-68 more bytes) and the kernel
 * allows 107; a longer path makes the dashboard fail at start (MetricsHead: "AF_UNIX path length cannot exceed 107
 * bytes"). Then a short per-node directory under /tmp is used, named by a hash of the long one.
 */
export function rayTempDirFor(nodeStateDir: string): string {
  const dir = join(nodeStateDir, 'ray');
  if (Buffer.byteLength(dir) <= maxRayTempDirBytes) return dir;
  return `/tmp/keel-ray-${createHash('sha256').update(dir).digest('hex').slice(0, 12)}`;
}

const maxRayTempDirBytes = 36;
