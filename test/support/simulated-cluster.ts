// A simulated cluster, a stand-in for scale benchmarks: nodes that answer every command after a fixed latency and
// do no work on this host. `SimulatedExecutor` is a real executor (the ssh executor's own process-record logic and
// its bound on commands in flight); only its one primitive, running an argv on a node, is simulated. It answers the
// node probe with output captured on a real 4 x H200 node (test/fixtures/nvidia-h200-x4-node), `ray start` with a
// launched process, and the node-side record scripts from an in-memory table. A stand-in of the Ray dashboard's
// state API lists a node as ALIVE `rayRegistrationMs` after its `ray start` was launched. Anything else it was not
// built to answer fails with exit 127 and says so: it never pretends.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { buildProbeCommand, formatProbeSection } from '../../src/cluster/node-probe.js';
import { notFoundExitCode } from '../../src/exec/node-scripts.js';
import { ScriptExecutor, type ExecOnNodeOptions, type RawResult } from '../../src/exec/script-executor.js';
import { nodeName, type NodeTarget } from '../../src/exec/types.js';
import { repoRoot } from './temporal.js';

export interface SimulatedClusterOptions {
  /** How long every command takes to answer (a round trip to the node and the command's own time). */
  latencyMs: number;
  /** From the launch of `ray start` until the node is ALIVE in the dashboard. */
  rayRegistrationMs: number;
  /** Directories every node sees the same (shared storage); every other path is the node's own. */
  sharedDirs: string[];
  /** Directories that exist on every node (the slime checkout, say). */
  existingDirs: string[];
  /**
   * Files written into the shared directories also land on this host's disk at the same path, as on a worker that
   * mounts the nodes' storage (the probe checks that the worker reads the nonce file a node wrote).
   */
  sharedOnDisk?: boolean;
}

interface SimProcess {
  record: string;
  state: 'running' | 'exited';
  exitCode?: number;
}

interface RayNode {
  nodeId: string;
  ip: string;
  gpus: number;
  head: boolean;
  aliveAt: number;
  dead: boolean;
}

const fixtureDir = join(repoRoot, 'test', 'fixtures', 'nvidia-h200-x4-node');
const fixtures = new Map<string, string>();
/** Read once: a simulated node answers from memory. */
const fixture = (name: string): string => {
  let text = fixtures.get(name);
  if (text === undefined) fixtures.set(name, (text = readFileSync(join(fixtureDir, name), 'utf8')));
  return text;
};

/** What the simulated nodes hold: files, process records, Ray membership. Shared by the executor and the dashboard. */
export class SimulatedCluster {
  readonly files = new Map<string, string>();
  readonly processes = new Map<string, SimProcess>();
  readonly ray = new Map<string, RayNode>();
  /** Commands answered, by kind (`run:probe`, `launch`, ...): what the benchmark's nodes were asked. */
  readonly commands = new Map<string, number>();
  /** Commands being answered now, and the most there ever were at once (the executor's bound, seen from the nodes). */
  inFlight = 0;
  maxInFlight = 0;
  private nextPid = 1000;

  constructor(readonly options: SimulatedClusterOptions) {}

  reset(): void {
    this.files.clear();
    this.processes.clear();
    this.ray.clear();
    this.commands.clear();
    this.maxInFlight = this.inFlight;
  }

  count(kind: string): void {
    this.commands.set(kind, (this.commands.get(kind) ?? 0) + 1);
  }

  fileKey(node: NodeTarget, path: string): string {
    const shared = this.options.sharedDirs.some((d) => path === d || path.startsWith(`${d.replace(/\/+$/, '')}/`));
    return shared ? `shared:${path}` : `${nodeName(node)}:${path}`;
  }

  pid(): number {
    return this.nextPid++;
  }

  /** The dashboard's `/api/v0/nodes` answer, or undefined while no head is alive (Ray's dashboard is not up yet). */
  nodesResponse(now = Date.now()): unknown {
    const listed = [...this.ray.values()].filter((n) => n.aliveAt <= now);
    if (!listed.some((n) => n.head && !n.dead)) return undefined;
    return {
      result: true,
      msg: '',
      data: {
        result: {
          total: listed.length,
          result: listed.map((n) => ({
            node_id: n.nodeId,
            node_ip: n.ip,
            is_head_node: n.head,
            state: n.dead ? 'DEAD' : 'ALIVE',
            resources_total: { CPU: 64, GPU: n.gpus },
          })),
        },
      },
    };
  }

  /** The stand-in dashboard on 127.0.0.1:`port` (0: any free port). */
  async serveDashboard(port = 0): Promise<{ port: number; close: () => Promise<void> }> {
    const server = http.createServer((req, res) => {
      const path = (req.url ?? '').split('?')[0];
      const body =
        path === '/api/v0/nodes'
          ? this.nodesResponse()
          : path === '/api/version'
            ? { version: '4', ray_version: '2.60.0 (simulated)' }
            : undefined;
      if (body === undefined) {
        res.writeHead(path === '/api/v0/nodes' ? 503 : 404, { 'content-type': 'text/plain' });
        res.end(path === '/api/v0/nodes' ? 'simulated cluster: no Ray head is alive' : 'not simulated');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    });
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    return {
      port: (server.address() as AddressInfo).port,
      close: () => new Promise((resolve) => server.close(() => resolve())),
    };
  }
}

/**
 * Output of the probe on a node: the H200 node's captured answers, with this node's name and address; the nonce file's
 * content (null: the file is not there) and whether the required directory exists, when the probe asked.
 */
export function cannedProbeOutput(
  hostname: string,
  address: string,
  asked: { nonce?: string | null; dirExists?: boolean } = {},
): string {
  let out =
    formatProbeSection('hostname', hostname) +
    formatProbeSection('addresses', address) +
    formatProbeSection('nproc', fixture('nproc.txt').trim()) +
    formatProbeSection('meminfo', fixture('meminfo.txt').trimEnd()) +
    formatProbeSection('df', fixture('df.txt').trimEnd().split('\n').slice(0, 2).join('\n')) +
    formatProbeSection('gpus', fixture('query-gpu.csv').trimEnd()) +
    formatProbeSection('gpu-apps', fixture('compute-apps.csv').trimEnd());
  if (asked.nonce === null) out += formatProbeSection('nonce', 'cat: No such file or directory', 1);
  else if (asked.nonce !== undefined) out += formatProbeSection('nonce', asked.nonce);
  if (asked.dirExists !== undefined) out += formatProbeSection('dir-exists', '', asked.dirExists ? 0 : 1);
  return out;
}

const probeScript = buildProbeCommand()[2];
const answer = (stdout: string, exitCode = 0, stderr = ''): RawResult => ({
  exitCode,
  stdout: Buffer.from(stdout),
  stderr,
});

/** Words after `flag` in a `ray start` argv (`--num-gpus 4` or `--num-gpus=4`). */
function flagValue(argv: string[], flag: string): string | undefined {
  const i = argv.indexOf(flag);
  if (i >= 0) return argv[i + 1];
  return argv.find((a) => a.startsWith(`${flag}=`))?.slice(flag.length + 1);
}

export class SimulatedExecutor extends ScriptExecutor {
  readonly kind = 'ssh' as const;

  /** `maxConcurrentCommands`: the bound on commands in flight, as the real executors take it. */
  constructor(
    readonly cluster: SimulatedCluster,
    stateDir: string | ((node: NodeTarget) => string),
    maxConcurrentCommands?: number,
  ) {
    super(stateDir, maxConcurrentCommands);
  }

  protected async execOnNode(node: NodeTarget, argv: string[], options: ExecOnNodeOptions = {}): Promise<RawResult> {
    const cluster = this.cluster;
    cluster.maxInFlight = Math.max(cluster.maxInFlight, ++cluster.inFlight);
    try {
      await delay(cluster.options.latencyMs);
    } finally {
      cluster.inFlight--;
    }
    const [sh, dashC, , operation, ...args] = argv;
    if (sh !== 'sh' || dashC !== '-c' || !operation?.startsWith('keel-')) return this.unknown(node, argv);
    switch (operation) {
      case 'keel-run':
        return this.run_(node, args);
      case 'keel-launch':
        return this.launch_(node, args);
      case 'keel-status':
        return this.status_(args[0]!, node);
      case 'keel-stop':
        return this.stop_(args[0]!, node);
      case 'keel-readFile': {
        this.cluster.count('readFile');
        const content = this.cluster.files.get(this.cluster.fileKey(node, args[0]!));
        return content === undefined ? answer('', notFoundExitCode) : answer(content);
      }
      case 'keel-writeFile': {
        this.cluster.count('writeFile');
        const key = this.cluster.fileKey(node, args[0]!);
        this.cluster.files.set(key, options.input ?? '');
        if (this.cluster.options.sharedOnDisk && key.startsWith('shared:')) {
          mkdirSync(dirname(args[0]!), { recursive: true });
          writeFileSync(args[0]!, options.input ?? '');
        }
        return answer('');
      }
      default:
        return this.unknown(node, argv);
    }
  }

  private unknown(node: NodeTarget, argv: string[]): RawResult {
    this.cluster.count('unknown');
    const what = argv.slice(3, 6).join(' ');
    return answer('', 127, `simulated node ${nodeName(node)}: no canned answer for ${what}`);
  }

  /** The run script's args: cwd timeoutSec nEnv NAME=VALUE... argv. */
  private run_(node: NodeTarget, args: string[]): RawResult {
    const n = Number(args[2]);
    const command = args.slice(3 + n);
    const [program, ...rest] = command;
    if (program === 'sh' && rest[0] === '-c' && rest[1] === probeScript && rest[2] === 'keel-probe') {
      this.cluster.count('run:probe');
      const [, , , , , nonceFile, requiredDir] = command;
      const probe = cannedProbeOutput(nodeName(node), node.host, {
        ...(nonceFile ? { nonce: this.cluster.files.get(this.cluster.fileKey(node, nonceFile)) ?? null } : {}),
        ...(requiredDir ? { dirExists: this.cluster.options.existingDirs.includes(requiredDir) } : {}),
      });
      return answer(probe);
    }
    const simple = `${program} ${rest.join(' ')}`;
    if (program === 'true' || (program === 'mkdir' && rest[0] === '-p') || simple === 'ray stop --force') {
      this.cluster.count(`run:${program}`);
      return answer('');
    }
    if (program === 'rm' && rest[0] === '-f') {
      this.cluster.count('run:rm');
      for (const path of rest.slice(1)) this.cluster.files.delete(this.cluster.fileKey(node, path));
      return answer('');
    }
    if (program === 'test' && rest[0] === '-d') {
      this.cluster.count('run:test');
      return answer('', this.cluster.options.existingDirs.includes(rest[1] ?? '') ? 0 : 1);
    }
    return this.unknown(node, ['sh', '-c', '', ...command]);
  }

  /** The launch script's args: dir logFile cwd recordPrefix hasSecrets wrapper nEnv NAME=VALUE... argv. */
  private launch_(node: NodeTarget, args: string[]): RawResult {
    this.cluster.count('launch');
    const [dir, , , prefix] = args;
    const key = `${nodeName(node)}:${dir}`;
    const existing = this.cluster.processes.get(key);
    if (existing?.state === 'running') return answer(`reattached\n${existing.record}\n`);
    const n = Number(args[6]);
    const command = args.slice(7 + n);
    const pid = this.cluster.pid();
    const record = `${prefix},"pid":${pid},"pgid":${pid},"startTime":"${pid}"}`;
    this.cluster.processes.set(key, { record, state: 'running' });
    if (command[0] === 'ray' && command[1] === 'start') {
      this.cluster.ray.set(key, {
        nodeId: `sim-${pid.toString(16).padStart(8, '0')}`,
        ip: flagValue(command, '--node-ip-address') ?? node.host,
        gpus: Number(flagValue(command, '--num-gpus') ?? 0),
        head: command.includes('--head'),
        aliveAt: Date.now() + this.cluster.options.rayRegistrationMs,
        dead: false,
      });
    }
    return answer(`launched\n${record}\n`);
  }

  private status_(dir: string, node: NodeTarget): RawResult {
    this.cluster.count('status');
    const p = this.cluster.processes.get(`${nodeName(node)}:${dir}`);
    if (!p) return answer('', notFoundExitCode);
    return answer(`${p.record}\n${p.state === 'running' ? 'running' : `exit ${p.exitCode}`}\n`);
  }

  private stop_(dir: string, node: NodeTarget): RawResult {
    this.cluster.count('stop');
    const key = `${nodeName(node)}:${dir}`;
    const p = this.cluster.processes.get(key);
    if (!p) return answer('', notFoundExitCode);
    if (p.state === 'running') Object.assign(p, { state: 'exited', exitCode: 137 });
    const ray = this.cluster.ray.get(key);
    if (ray) ray.dead = true;
    return answer('');
  }
}
