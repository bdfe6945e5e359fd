// Real OpenSSH servers on loopback addresses (the local cluster's nodes, and tests): one `sshd -D -e` per node, each on its own 127.x address, with
// generated host keys, a generated client key authorized for the current user, and a known_hosts file for them all.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { canConnect, freePort } from './net.js';

export const sshdPath = '/usr/sbin/sshd';

export interface SshNode {
  host: string;
  port: number;
}

export interface SshCluster {
  nodes: SshNode[];
  identityFile: string;
  knownHostsFile: string;
  user: string;
  /** The directory holding keys, configs and each sshd's log (`sshd-<i>.log`). */
  dir: string;
  /** Stops exactly the sshd processes (and their connection handlers) this cluster started; removes its files. */
  stop(): Promise<void>;
  /** Stop one node's sshd (the node becomes unreachable), and start it again on the same address and key. */
  stopNode(index: number): Promise<void>;
  startNode(index: number): Promise<void>;
}

export interface SshClusterOptions {
  count: number;
  /** Node i listens on basePort + i; by default each node gets a free port of its own. */
  basePort?: number;
  /** First address; node i gets the last octet increased by i. Default 127.0.1.1. */
  baseAddress?: string;
  /**
   * Storage that is not shared: node i's sshd (and so every command run on node i) sees `sources[i]` at `target`,
   * bound in a mount namespace of its own. Needs root and unshare (see {@link nodeLocalMountsUnavailableReason}).
   */
  nodeLocalMount?: { target: string; sources: string[] };
}

/** Why node-local mounts cannot be made here, or undefined when they can. */
export function nodeLocalMountsUnavailableReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'node-local mounts need root (a mount namespace per sshd)';
  if (!existsSync('/usr/bin/unshare')) return '/usr/bin/unshare is missing';
  return undefined;
}

/** Why the ssh tests cannot run here, or undefined when they can. */
export function sshUnavailableReason(): string | undefined {
  if (!existsSync(sshdPath)) return `${sshdPath} is missing (install openssh-server)`;
  return undefined;
}

export async function startSshCluster(options: SshClusterOptions): Promise<SshCluster> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'keel-sshd-'));
  const servers: ChildProcess[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(servers.map((server) => stopServer(server)));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
    const user = os.userInfo().username;
    const identityFile = path.join(dir, 'id_ed25519');
    await generateKey(identityFile, 'keel-test-client');
    await writeFile(path.join(dir, 'authorized_keys'), await readFile(`${identityFile}.pub`), { mode: 0o600 });
    const nodes: SshNode[] = [];
    const knownHosts: string[] = [];
    for (let i = 0; i < options.count; i++) {
      const host = offsetAddress(options.baseAddress ?? '127.0.1.1', i);
      const hostKey = path.join(dir, `host-${i}_ed25519`);
      await generateKey(hostKey, `keel-test-host-${i}`);
      const port = options.basePort === undefined ? await freePort(host) : options.basePort + i;
      servers.push(await startServer(dir, i, host, port, hostKey, mountFor(options, i)));
      nodes.push({ host, port });
      const [type, key] = (await readFile(`${hostKey}.pub`, 'utf8')).trim().split(/\s+/);
      knownHosts.push(`${port === 22 ? host : `[${host}]:${port}`} ${type} ${key}\n`);
    }
    const knownHostsFile = path.join(dir, 'known_hosts');
    await writeFile(knownHostsFile, knownHosts.join(''), { mode: 0o600 });
    const stopNode = async (index: number): Promise<void> => {
      const server = servers[index];
      if (server) await stopServer(server);
    };
    const startNode = async (index: number): Promise<void> => {
      const node = nodes[index];
      if (!node) throw new Error(`no ssh node ${index}`);
      const server = servers[index];
      if (server && server.exitCode === null && server.signalCode === null) return;
      const hostKey = path.join(dir, `host-${index}_ed25519`);
      servers[index] = await startServer(dir, index, node.host, node.port, hostKey, mountFor(options, index));
    };
    return { nodes, identityFile, knownHostsFile, user, dir, stop, stopNode, startNode };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function generateKey(file: string, comment: string): Promise<void> {
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file]);
}

function offsetAddress(base: string, offset: number): string {
  const octets = base.split('.').map(Number);
  if (octets.length !== 4 || octets[0] !== 127) throw new Error(`not a loopback IPv4 address: ${base}`);
  octets[3] = (octets[3] ?? 0) + offset;
  if ((octets[3] ?? 0) > 254) throw new Error(`too many nodes for base address ${base}`);
  return octets.join('.');
}

function mountFor(options: SshClusterOptions, index: number): { target: string; source: string } | undefined {
  const m = options.nodeLocalMount;
  const source = m?.sources[index];
  return m && source ? { target: m.target, source } : undefined;
}

async function startServer(
  dir: string,
  index: number,
  host: string,
  port: number,
  hostKey: string,
  mount?: { target: string; source: string },
): Promise<ChildProcess> {
  const config = path.join(dir, `sshd-${index}.conf`);
  await writeFile(
    config,
    [
      `ListenAddress ${host}:${port}`,
      `HostKey ${hostKey}`,
      `PidFile ${path.join(dir, `sshd-${index}.pid`)}`,
      `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      'UsePAM no',
      'StrictModes no',
      'MaxSessions 64',
      'MaxStartups 64',
      'LogLevel VERBOSE',
      '',
    ].join('\n'),
  );
  const logFile = path.join(dir, `sshd-${index}.log`);
  const logFd = openSync(logFile, 'a');
  // Own process group; each connection handler is a child in a session of its own (stop() ends those by ppid).
  const sshd = [sshdPath, '-D', '-e', '-f', config];
  // unshare and sh exec in place: the spawned pid ends up being sshd itself
  const argv = mount
    ? [
        ...['/usr/bin/unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c'],
        'mount --bind "$1" "$2" && shift 2 && exec "$@"',
        ...['keel-node', mount.source, mount.target, ...sshd],
      ]
    : sshd;
  const server = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  let exited = false;
  server.once('exit', () => (exited = true));
  for (let attempt = 0; attempt < 100; attempt++) {
    if (exited) break;
    if (await canConnect(host, port)) return server;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await stopServer(server);
  const log = await readFile(logFile, 'utf8').catch(() => '');
  throw new Error(`sshd on ${host}:${port} did not start: ${log.trim()}`);
}

async function stopServer(server: ChildProcess): Promise<void> {
  if (server.pid === undefined || server.exitCode !== null || server.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => server.once('exit', () => resolve()));
  // Every process under the listener, found before any is signalled: a connection's session process (`root@notty`)
  // is a grandchild that would outlive its parent, keeping an ssh ControlMaster connection -- and the node -- alive.
  for (const child of descendantPids(server.pid)) {
    try {
      process.kill(child, 'SIGTERM');
    } catch {
      // gone meanwhile
    }
  }
  try {
    process.kill(-server.pid, 'SIGTERM');
  } catch {
    return; // already gone
  }
  const timer = setTimeout(() => {
    try {
      process.kill(-server.pid!, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }, 3000);
  await exited;
  clearTimeout(timer);
}

/** Direct children of a process (the per-connection sshd processes of a listener), read from /proc. */
function descendantPids(root: number): number[] {
  const found: number[] = [];
  for (let next = [root]; next.length;) {
    next = next.flatMap((pid) => childPids(pid));
    found.push(...next);
  }
  return found;
}

function childPids(parent: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(') ') + 2).split(' ')[1]);
      if (ppid === parent) children.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return children;
}
