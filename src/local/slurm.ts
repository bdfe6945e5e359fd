// A real Slurm cluster on this machine: one slurmctld, one munged and one `slurmd -N nX` per node. Debian's Slurm is
// built with MULTIPLE_SLURMD, so every node is its own slurmd on its own port; each node's NodeAddr is its own
// loopback address (127.0.1.X, the local cluster's), so what keel reads from Slurm is what Ray and torchrun use.
// GPUs are faked as gres (`File=` symlinks to /dev/null: gres/gpu drops GPUs without one and rejects regular files).
// Everything lives in one directory; teardown stops only the daemons whose pid files are in it.
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';

export interface LocalSlurmOptions {
  /** where config, state, logs and pid files live */
  dir: string;
  /** slurmd nodes n1..nN */
  nodes: number;
  gpusPerNode: number;
  /** slurmctld listens on basePort + 817, node nX's slurmd on basePort + X. Default 17000. */
  basePort?: number;
  /** seconds before slurmctld marks a silent node DOWN (Slurm's SlurmdTimeout). Default 5. */
  slurmdTimeoutSec?: number;
  log?: (line: string) => void;
}

export interface LocalSlurm {
  dir: string;
  /** SLURM_CONF for clients */
  conf: string;
  /** node names, n1..nN */
  nodes: string[];
  /** the node's loopback address (its NodeAddr) */
  addressOf(node: string): string;
  /** kill a node's slurmd with SIGKILL (a node crash as Slurm sees it); returns its pid */
  killSlurmd(node: string): Promise<number>;
  startSlurmd(node: string): Promise<void>;
  /**
   * A node crash: its slurmd (when still running) and every process of every step on it (its freezer cgroups) killed
   * with SIGKILL. Returns the pids of the steps' processes killed.
   */
  crashNode(node: string): Promise<number[]>;
  /** Bring a crashed node back: its slurmd again, and its state resumed (Slurm keeps a node DOWN until told). */
  reviveNode(node: string): Promise<void>;
  stop(): Promise<void>;
}

/** Whether this machine can run the local Slurm cluster (the Debian packages, and root: slurmd runs jobs as any user). */
export function localSlurmUnavailable(): string | undefined {
  const missing = ['/usr/sbin/slurmctld', '/usr/sbin/slurmd', '/usr/sbin/munged', '/usr/bin/sbatch'].filter(
    (p) => !existsSync(p),
  );
  if (missing.length) {
    return `Slurm is not installed (missing ${missing.join(', ')}): run npm run setup as root (apt-get install slurmctld slurmd slurm-client munge)`;
  }
  if (process.getuid?.() !== 0) return 'the local Slurm cluster needs root (slurmd starts jobs as their user)';
  return undefined;
}

export function nodeAddress(index: number): string {
  return `127.0.1.${index}`;
}

function slurmConf(o: Required<Omit<LocalSlurmOptions, 'log'>>, mungeSocket: string): string {
  const d = o.dir;
  const nodeLines = Array.from({ length: o.nodes }, (_, i) => {
    const n = i + 1;
    return `NodeName=n${n} NodeHostname=n${n} NodeAddr=${nodeAddress(n)} Port=${o.basePort + n} CPUs=4 RealMemory=4000 Gres=gpu:${o.gpusPerNode} State=UNKNOWN`;
  });
  return [
    'ClusterName=keel-local',
    `SlurmctldHost=${hostname()}(127.0.0.1)`,
    `SlurmctldPort=${o.basePort + 817}`,
    'AuthType=auth/munge',
    'CredType=cred/munge',
    // cred_expire=10 (default 120) lets a requeued or re-run job start again within seconds
    `AuthInfo=socket=${mungeSocket},cred_expire=10`,
    'SlurmUser=root',
    'SlurmdUser=root',
    `StateSaveLocation=${d}/state`,
    `SlurmdSpoolDir=${d}/spool/%n`,
    `SlurmctldPidFile=${d}/run/slurmctld.pid`,
    `SlurmdPidFile=${d}/run/slurmd-%n.pid`,
    `SlurmctldLogFile=${d}/log/slurmctld.log`,
    `SlurmdLogFile=${d}/log/slurmd-%n.log`,
    // the cgroup v1 freezer tracks every process of a step, daemonized ones included (Ray's)
    `ProctrackType=proctrack/${existsSync('/sys/fs/cgroup/freezer') ? 'cgroup' : 'linuxproc'}`,
    'TaskPlugin=task/none',
    'JobAcctGatherType=jobacct_gather/none',
    'AccountingStorageType=accounting_storage/none',
    'JobCompType=jobcomp/filetxt',
    `JobCompLoc=${d}/log/jobcomp.txt`,
    'SelectType=select/cons_tres',
    'SelectTypeParameters=CR_Core',
    'SchedulerType=sched/backfill',
    'SchedulerParameters=bf_interval=1,sched_interval=2',
    'MpiDefault=none',
    'SwitchType=switch/none',
    'MailProg=/bin/true',
    'ReturnToService=2',
    `SlurmdTimeout=${o.slurmdTimeoutSec}`,
    'SlurmctldTimeout=10',
    'InactiveLimit=0',
    'KillWait=5',
    'MinJobAge=600',
    'MessageTimeout=5',
    'JobRequeue=0',
    'SlurmdParameters=config_overrides',
    'GresTypes=gpu',
    ...nodeLines,
    `PartitionName=gpu Nodes=n[1-${o.nodes}] Default=YES MaxTime=INFINITE State=UP`,
    '',
  ].join('\n');
}

async function readPid(file: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(file, 'utf8')).trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitUntil(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`local Slurm: ${what} within ${timeoutMs / 1000} s`);
}

/** SIGTERM the daemons in these pid files, SIGKILL after 10 s. */
async function stopDaemons(pidFiles: string[]): Promise<void> {
  const pids: number[] = [];
  for (const f of pidFiles) {
    const pid = await readPid(f);
    if (pid !== undefined && alive(pid)) pids.push(pid);
    await rm(f, { force: true });
  }
  for (const pid of pids) process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 10_000;
  while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  for (const pid of pids.filter(alive)) process.kill(pid, 'SIGKILL');
}

export async function startLocalSlurm(options: LocalSlurmOptions): Promise<LocalSlurm> {
  const unavailable = localSlurmUnavailable();
  if (unavailable) throw new Error(unavailable);
  const o = { basePort: 17000, slurmdTimeoutSec: 5, ...options, log: undefined };
  const d = o.dir;
  const conf = join(d, 'etc', 'slurm.conf');
  const env = { ...process.env, SLURM_CONF: conf };
  await prepareNamespaceForSlurm();
  // Left by an earlier cluster in this directory: stop it first (its pid files are ours).
  await stopLocalSlurm(d);
  for (const sub of ['etc', 'state', 'run', 'log', 'spool', 'dev']) {
    await mkdir(join(d, sub), { recursive: true });
  }
  // munged runs as its own user: its directories live where that user can reach them (the cluster's directory may
  // be private). It refuses a socket directory without o+x and a key directory others can read: two directories.
  const mungeRoot = mungeRootOf(d);
  await mkdir(mungeRoot, { recursive: true, mode: 0o755 });
  await chmod(mungeRoot, 0o755);
  const munge = join(mungeRoot, 'munge');
  const sock = join(mungeRoot, 'munge-sock', 'munge.sock');
  await mkdir(munge, { recursive: true });
  await mkdir(join(mungeRoot, 'munge-sock'), { recursive: true });
  const { stdout: uid } = await execa('id', ['-u', 'munge']);
  const { stdout: gid } = await execa('id', ['-g', 'munge']);
  await chown(munge, Number(uid), Number(gid));
  await chown(join(mungeRoot, 'munge-sock'), Number(uid), Number(gid));
  await chmod(munge, 0o700);
  await chmod(join(mungeRoot, 'munge-sock'), 0o755);
  const key = join(munge, 'munge.key');
  if (!existsSync(key)) await execa('runuser', ['-u', 'munge', '--', 'mungekey', '--create', `--keyfile=${key}`]);
  await execa('runuser', [
    '-u',
    'munge',
    '--',
    'munged',
    `--socket=${sock}`,
    `--key-file=${key}`,
    `--pid-file=${munge}/munged.pid`,
    `--seed-file=${munge}/munged.seed`,
    `--log-file=${munge}/munged.log`,
  ]);
  await writeFile(conf, slurmConf(o, sock));
  for (let g = 0; g < o.gpusPerNode; g++) {
    await rm(join(d, 'dev', `nvidia${g}`), { force: true });
    await symlink('/dev/null', join(d, 'dev', `nvidia${g}`));
  }
  await writeFile(
    join(d, 'etc', 'gres.conf'),
    `NodeName=n[1-${o.nodes}] Name=gpu File=${d}/dev/nvidia[0-${o.gpusPerNode - 1}]\n`,
  );
  await writeFile(
    join(d, 'etc', 'cgroup.conf'),
    'CgroupPlugin=cgroup/v1\nCgroupAutomount=no\nConstrainCores=no\nConstrainRAMSpace=no\nConstrainDevices=no\n',
  );
  const nodes = Array.from({ length: o.nodes }, (_, i) => `n${i + 1}`);
  const startSlurmd = async (node: string) => {
    await mkdir(join(d, 'spool', node), { recursive: true });
    await execa('slurmd', ['-f', conf, '-N', node], { env });
  };
  try {
    // -i: start from a clean state (no jobs of an earlier cluster)
    await execa('slurmctld', ['-f', conf, '-i'], { env });
    for (const node of nodes) await startSlurmd(node);
    await waitUntil(`${o.nodes} nodes did not become idle (see ${d}/log)`, 30_000, async () => {
      const r = await execa('sinfo', ['-h', '-N', '-t', 'idle', '-o', '%N'], { env, reject: false });
      return new Set(String(r.stdout).split('\n').filter(Boolean)).size >= o.nodes;
    });
  } catch (error) {
    await stopLocalSlurm(d);
    throw error;
  }
  options.log?.(`local Slurm up: ${o.nodes} nodes (SLURM_CONF=${conf})`);
  return {
    dir: d,
    conf,
    nodes,
    addressOf: (node) => nodeAddress(Number(node.slice(1))),
    async killSlurmd(node) {
      const pid = await readPid(join(d, 'run', `slurmd-${node}.pid`));
      if (pid === undefined) throw new Error(`no slurmd running for ${node}`);
      process.kill(pid, 'SIGKILL');
      return pid;
    },
    startSlurmd,
    async crashNode(node) {
      const slurmd = await readPid(join(d, 'run', `slurmd-${node}.pid`));
      if (slurmd !== undefined && alive(slurmd)) process.kill(slurmd, 'SIGKILL');
      const procs = await execa(
        'sh',
        [
          '-c',
          'find "$1" -name cgroup.procs -exec cat {} + 2>/dev/null',
          'procs',
          `/sys/fs/cgroup/freezer/slurm_${node}`,
        ],
        { reject: false },
      );
      const pids = String(procs.stdout).split('\n').filter(Boolean).map(Number);
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      return pids;
    },
    async reviveNode(node) {
      await startSlurmd(node);
      await execa('scontrol', ['update', `NodeName=${node}`, 'State=RESUME'], { env, reject: false });
    },
    stop: () => stopLocalSlurm(d),
  };
}

/**
 * Stop what `startLocalSlurm` started in `dir`: cancel the jobs and let them end, stop the daemons by their pid files,
 * then end what is left in this cluster's own freezer cgroups (slurmstepd and tasks would otherwise be orphaned).
 */
export async function stopLocalSlurm(dir: string): Promise<void> {
  const conf = join(dir, 'etc', 'slurm.conf');
  const env = { ...process.env, SLURM_CONF: conf };
  const ctld = await readPid(join(dir, 'run', 'slurmctld.pid'));
  if (ctld !== undefined && alive(ctld)) {
    await execa('scancel', ['--quiet', '--full', '--user', 'root'], { env, reject: false, timeout: 10_000 });
    await waitUntil('jobs did not end', 15_000, async () => {
      const r = await execa('squeue', ['-h', '-o', '%T'], { env, reject: false, timeout: 10_000 });
      return r.exitCode !== 0 || String(r.stdout).trim() === '';
    }).catch(() => undefined);
  }
  const runDir = join(dir, 'run');
  const { readdir } = await import('node:fs/promises');
  const pidFiles = existsSync(runDir) ? (await readdir(runDir)).filter((f) => f.endsWith('.pid')) : [];
  await stopDaemons(pidFiles.map((f) => join(runDir, f)));
  await stopDaemons([join(mungeRootOf(dir), 'munge', 'munged.pid')]);
  await reapCgroups(await nodesOf(conf));
  await rm(mungeRootOf(dir), { recursive: true, force: true });
}

/** munged's directories for the cluster in `dir`: under the system's temp directory, named after `dir`. */
function mungeRootOf(dir: string): string {
  return join(tmpdir(), `keel-munge-${createHash('sha256').update(dir).digest('hex').slice(0, 12)}`);
}

async function nodesOf(conf: string): Promise<string[]> {
  try {
    return [...(await readFile(conf, 'utf8')).matchAll(/^NodeName=(\S+)/gm)].map((m) => m[1]!);
  } catch {
    return [];
  }
}

/** Kill what is left in the freezer cgroups of these nodes (`slurm_<node>`) and remove the cgroups. */
async function reapCgroups(nodes: string[]): Promise<void> {
  for (const node of nodes) {
    const root = `/sys/fs/cgroup/freezer/slurm_${node}`;
    if (!existsSync(root)) continue;
    await execa('sh', ['-c', 'find "$1" -name cgroup.procs -exec cat {} + | xargs -r kill -9', 'reap', root], {
      reject: false,
    });
    await new Promise((r) => setTimeout(r, 200));
    await execa('sh', ['-c', 'find "$1" -depth -type d -exec rmdir {} + 2>/dev/null', 'reap', root], {
      reject: false,
    });
  }
}

// Inside the private network namespace of scripts/loopback-only.sh (tests, demos) Slurm resolves its listening
// addresses with getaddrinfo(AI_ADDRCONFIG) for IPv4, which fails while only loopback addresses exist: one more
// address on the namespace's own loopback interface makes IPv4 "configured". Never outside such a namespace.
/** True in the private namespace of scripts/loopback-only.sh (it says so) while its only interface is loopback. */
async function inPrivateLoopbackNamespace(): Promise<boolean> {
  if (process.env.KEEL_PRIVATE_NETNS !== '1') return false;
  try {
    const { stdout } = await execa('ip', ['-o', 'link', 'show']);
    return stdout
      .split('\n')
      .filter(Boolean)
      .every((line) => / lo: /.test(line));
  } catch {
    return false;
  }
}

async function prepareNamespaceForSlurm(): Promise<void> {
  if (!(await inPrivateLoopbackNamespace())) return;
  const { stdout } = await execa('ip', ['-o', '-4', 'addr', 'show', 'dev', 'lo']);
  if (!stdout.includes('10.254.0.1/32')) await execa('ip', ['addr', 'add', '10.254.0.1/32', 'dev', 'lo']);
}
