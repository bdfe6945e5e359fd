// Slurm's client commands, as keel uses them: the holder batch job (sbatch), finding it by name (squeue), its nodes and
// their addresses (scontrol), and its end (scancel). Pure argv builders and parsers, plus one runner per command.
// Node names never resolve on every cluster: a node's address is its NodeAddr (`scontrol show node -o`).
import { execa } from 'execa';
import { loginEnvironment } from '../exec/node-environment.js';
import { durationMs } from '../spec/duration.js';
import type { SlurmExecutorSpec } from '../spec/schema.js';

/** Job states after which the job holds no node (squeue's long names). */
export const terminalJobStates = [
  'BOOT_FAIL',
  'CANCELLED',
  'COMPLETED',
  'DEADLINE',
  'FAILED',
  'NODE_FAIL',
  'OUT_OF_MEMORY',
  'PREEMPTED',
  'TIMEOUT',
] as const;

export interface SlurmJob {
  jobId: string;
  name: string;
  /** PENDING, RUNNING, COMPLETING, ... */
  state: string;
  /** why it waits (Priority, Resources, ...) or `None` */
  reason: string;
  /** compressed node list, e.g. n[1-5]; empty while pending */
  nodeList: string;
  /** submit time as Slurm prints it (local time, ISO-like) */
  submitTime: string;
  /** time left before the job's time limit, as squeue's %L prints it (`1-02:03:04`, `59:58`, `UNLIMITED`, ...) */
  timeLeft?: string;
}

export interface SlurmNode {
  name: string;
  address: string;
  /** Slurm's state, e.g. IDLE, MIXED, ALLOCATED, DOWN*, DRAIN */
  state: string;
  /** why Slurm set a DOWN or DRAIN state (`Not responding`, an admin's reason), when it says */
  reason?: string;
}

/** A node of the allocation that Slurm says is lost to the job, and what Slurm says about it. */
export interface SlurmLostNode {
  name: string;
  why: string;
}

/**
 * Whether Slurm has taken this node away from a job: its state is DOWN, DRAIN(ED/ING) or FAIL(ING) (`DOWN*`,
 * `ALLOCATED+DRAIN`, ...). A trailing `*` alone (not responding yet) is not enough: Slurm marks the node DOWN after
 * its SlurmdTimeout, and keel follows Slurm's judgement.
 */
export function nodeLost(state: string): boolean {
  return state
    .toUpperCase()
    .split('+')
    .some((part) => lostNodeStates.has(part.replace(/[*~#!%$@^-]+$/, '')));
}
const lostNodeStates = new Set(['DOWN', 'DRAIN', 'DRAINED', 'DRAINING', 'FAIL', 'FAILING']);

/** The name of the job that holds a run's allocation: the run's id, so that any worker finds it again. */
export function holderJobName(runKey: string): string {
  return `keel-${runKey}`.slice(0, 200);
}

/** sbatch's whole minutes for a keel duration (Slurm's --time takes minutes). */
export function timeLimitMinutes(limit: string): number {
  return Math.max(1, Math.ceil(durationMs(limit) / 60_000));
}

/**
 * sbatch's argv for the holder job: the run's nodes, one task each, and a batch script that only waits. Every
 * program of the run is a step inside it (`srun --overlap --jobid`), so that the allocation outlives any of them.
 */
export function holderSbatchArgv(input: {
  executor: SlurmExecutorSpec;
  runKey: string;
  nodes: number;
  gpusPerNode: number;
  exclude?: string[];
}): string[] {
  const ex = input.executor;
  return [
    'sbatch',
    '--parsable',
    `--job-name=${holderJobName(input.runKey)}`,
    `--nodes=${input.nodes}`,
    '--ntasks-per-node=1',
    `--gres=${ex.gres ?? `gpu:${input.gpusPerNode}`}`,
    ...(ex.exclusive ? ['--exclusive'] : []),
    ...(ex.partition ? [`--partition=${ex.partition}`] : []),
    ...(ex.account ? [`--account=${ex.account}`] : []),
    ...(ex.qos ? [`--qos=${ex.qos}`] : []),
    ...(ex.timeLimit ? [`--time=${timeLimitMinutes(ex.timeLimit)}`] : []),
    ...(ex.constraint ? [`--constraint=${ex.constraint}`] : []),
    ...(input.exclude?.length ? [`--exclude=${input.exclude.join(',')}`] : []),
    // a failed node leaves the job running on the others: keel heals onto a spare of the allocation
    '--no-kill',
    '--no-requeue',
    '--output=/dev/null',
    ...ex.extraArgs,
    '--wrap=exec sleep infinity',
  ];
}

/** The argv prefix of one step on one node inside the allocation: detached from other steps' CPUs (`--overlap`). */
export function stepArgv(jobId: string, node: string): string[] {
  return ['srun', '--overlap', `--jobid=${jobId}`, '--nodes=1', '--ntasks=1', `--nodelist=${node}`, '--quiet'];
}

const squeueFormat = '%i|%j|%T|%r|%N|%V|%L';

export function parseSqueue(text: string): SlurmJob[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const [jobId = '', name = '', state = '', reason = '', nodeList = '', submitTime = '', timeLeft] =
        line.split('|');
      return { jobId, name, state, reason, nodeList, submitTime, ...(timeLeft ? { timeLeft } : {}) };
    });
}

/**
 * squeue's time left (%L) in ms: `[days-][hours:]minutes:seconds`. Undefined when the job has no limit (`UNLIMITED`)
 * or Slurm has not set one yet (`NOT_SET`, `INVALID`, empty).
 */
export function timeLeftMs(text: string | undefined): number | undefined {
  const m = /^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)$/.exec(text?.trim() ?? '');
  if (!m) return undefined;
  const [, days = '0', hours = '0', minutes = '0', seconds = '0'] = m;
  return (((Number(days) * 24 + Number(hours)) * 60 + Number(minutes)) * 60 + Number(seconds)) * 1000;
}

/**
 * A node state as sinfo writes it: the NOT_RESPONDING flag as a `*` after the base state. scontrol of Slurm 22.05
 * prints `DOWN+NOT_RESPONDING` where older releases (and sinfo) print `DOWN*`.
 */
export function shortNodeState(state: string): string {
  const [base = '', ...flags] = state.split('+');
  const rest = flags.filter((f) => f.toUpperCase() !== 'NOT_RESPONDING');
  if (rest.length === flags.length) return state;
  return [base.endsWith('*') ? base : `${base}*`, ...rest].join('+');
}

/** `scontrol show node -o` lines -> name, NodeAddr, State (see shortNodeState). */
export function parseNodes(text: string): SlurmNode[] {
  return text
    .split('\n')
    .filter((line) => line.startsWith('NodeName='))
    .map((line) => {
      const field = (key: string) => new RegExp(`(?:^| )${key}=(\\S+)`).exec(line)?.[1] ?? '';
      // Reason= is the last field and may hold spaces: `Reason=Not responding [slurm@2026-12-07T04:42:01]`
      const reason = /(?:^| )Reason=(.*?)(?: \[[^\]]*\])?\s*$/.exec(line)?.[1];
      return {
        name: field('NodeName'),
        address: field('NodeAddr') || field('NodeName'),
        state: shortNodeState(field('State')),
        ...(reason && reason !== '(null)' ? { reason } : {}),
      };
    });
}

/** Runs Slurm's client commands with SLURM_CONF when the spec names one, and nothing else of the worker's env. */
export class SlurmClient {
  constructor(private readonly slurmConf?: string) {}

  get env(): Record<string, string> {
    return { ...loginEnvironment(), ...(this.slurmConf ? { SLURM_CONF: this.slurmConf } : {}) };
  }

  async command(argv: string[], timeoutMs = 60_000): Promise<string> {
    const [file, ...args] = argv;
    const r = await execa(file!, args, { env: this.env, extendEnv: false, reject: false, timeout: timeoutMs });
    if (r.exitCode !== 0) {
      throw new Error(`${argv.slice(0, 2).join(' ')} failed (exit ${r.exitCode}): ${String(r.stderr).trim()}`);
    }
    return String(r.stdout);
  }

  /** The live (not yet ended) jobs with this name, oldest first. */
  async jobsNamed(name: string): Promise<SlurmJob[]> {
    const out = await this.command(['squeue', '--noheader', `--name=${name}`, `--format=${squeueFormat}`]);
    return parseSqueue(out)
      .filter((j) => !(terminalJobStates as readonly string[]).includes(j.state))
      .sort((a, b) => Number(a.jobId) - Number(b.jobId));
  }

  /** One job by id, or undefined when Slurm no longer lists it. */
  async job(jobId: string): Promise<SlurmJob | undefined> {
    const r = await execa('squeue', ['--noheader', `--jobs=${jobId}`, '--states=all', `--format=${squeueFormat}`], {
      env: this.env,
      extendEnv: false,
      reject: false,
      timeout: 60_000,
    });
    // squeue exits 1 for an id it has forgotten (older than MinJobAge)
    if (r.exitCode !== 0) {
      if (/Invalid job id/i.test(String(r.stderr))) return undefined;
      throw new Error(`squeue failed (exit ${r.exitCode}): ${String(r.stderr).trim()}`);
    }
    return parseSqueue(String(r.stdout))[0];
  }

  async submit(argv: string[]): Promise<string> {
    const out = (await this.command(argv)).trim();
    const jobId = out.split(';')[0]!;
    if (!/^\d+$/.test(jobId)) throw new Error(`sbatch printed no job id: ${JSON.stringify(out)}`);
    return jobId;
  }

  async hostnames(nodeList: string): Promise<string[]> {
    if (!nodeList) return [];
    return (await this.command(['scontrol', 'show', 'hostnames', nodeList])).split('\n').filter(Boolean);
  }

  async nodes(names: string[]): Promise<SlurmNode[]> {
    if (names.length === 0) return [];
    return parseNodes(await this.command(['scontrol', 'show', 'node', names.join(','), '-o']));
  }

  /**
   * The nodes of `names` that Slurm has taken from the job: DOWN, drained or failed, or no longer in the job's node
   * list (a job with --no-kill drops a failed node and runs on). The job itself ended (NODE_FAIL, ...) loses them all.
   */
  async lostNodes(jobId: string, names: string[]): Promise<SlurmLostNode[]> {
    if (names.length === 0) return [];
    const job = await this.job(jobId);
    if (job === undefined || (terminalJobStates as readonly string[]).includes(job.state)) {
      const why = `job ${jobId} ${job ? `ended ${job.state}` : 'is no longer listed'}`;
      return names.map((name) => ({ name, why }));
    }
    const inJob = new Set(await this.hostnames(job.nodeList));
    const byName = new Map((await this.nodes(names)).map((n) => [n.name, n]));
    const lost: SlurmLostNode[] = [];
    for (const name of names) {
      const node = byName.get(name);
      const says: string[] = [];
      if (node && nodeLost(node.state)) says.push(`${node.state}${node.reason ? ` (${node.reason})` : ''}`);
      if (!inJob.has(name)) says.push(`no longer in job ${jobId}`);
      if (says.length > 0) lost.push({ name, why: says.join(', ') });
    }
    return lost;
  }

  /**
   * End a job: TERM to every process of it, then after the grace a plain scancel (KILL after Slurm's KillWait), and
   * wait until squeue shows it ended. Returns the state it ended in.
   */
  async cancel(jobId: string, graceMs: number, waitMs = 60_000): Promise<string> {
    const ended = async () => {
      const job = await this.job(jobId);
      return job === undefined || (terminalJobStates as readonly string[]).includes(job.state) ? job : false;
    };
    await this.command(['scancel', '--signal=TERM', '--full', jobId]).catch(() => undefined);
    const graceEnd = Date.now() + graceMs;
    while (Date.now() < graceEnd) {
      const job = await ended();
      if (job !== false) return job?.state ?? 'GONE';
      await new Promise((r) => setTimeout(r, 500));
    }
    await this.command(['scancel', jobId]);
    const deadline = Date.now() + waitMs;
    for (;;) {
      const job = await ended();
      if (job !== false) return job?.state ?? 'GONE';
      if (Date.now() > deadline) throw new Error(`job ${jobId} did not end within ${waitMs / 1000} s of scancel`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}
