// One POSIX sh script that collects what keel needs to judge a node, and the parser of its output.
// The script is run remotely as argv (`sh -c SCRIPT keel-probe DIR`): the directory travels as $1, never pasted
// into the script text. Each section starts with a marker line and ends with a marker carrying its exit status.
import { assessGpus, computeAppsQueryArgs, gpuQueryArgs, parseComputeAppsCsv, parseGpuQueryCsv } from './gpu-probe.js';
import type { ComputeApp, GpuHealth, GpuRecord } from './gpu-probe.js';
import { parseDf, parseHostAddresses, parseMeminfo, parseNproc } from './host-probe.js';
import type { DiskUsage, MemInfo } from './host-probe.js';

const marker = '@@keel-probe';
const sectionPattern = /^@@keel-probe (begin|end) ([\w-]+)(?: (\d+))?@@$/;

export interface ProbeOptions {
  /** The directory whose filesystem to measure (the shared storage, e.g. the save dir). Default `/`. */
  dir?: string;
  /** A file to read back (the nonce another node wrote into shared storage): section `nonce`. */
  nonceFile?: string;
  /** A directory that must exist (the slime checkout): section `dir-exists`, its exit status the answer. */
  requiredDir?: string;
}

/**
 * argv of the probe: `sh -c <script> keel-probe <dir> <nonce file> <required dir>` (the last two may be empty). One
 * command a node: at 1024 nodes every extra round trip is 1024 more ssh sessions.
 */
export function buildProbeCommand(options: ProbeOptions = {}): string[] {
  return [
    'sh',
    '-c',
    probeScript(),
    'keel-probe',
    options.dir ?? '/',
    options.nonceFile ?? '',
    options.requiredDir ?? '',
  ];
}

function probeScript(): string {
  const gpuQuery = gpuQueryArgs().join(' ');
  const appsQuery = computeAppsQueryArgs().join(' ');
  return [
    `section() { name=$1; shift; printf '\\n${marker} begin %s@@\\n' "$name"; "$@" 2>&1; printf '\\n${marker} end %s %d@@\\n' "$name" "$?"; }`,
    'section hostname hostname',
    'section addresses hostname -I',
    'section nproc nproc',
    'section meminfo cat /proc/meminfo',
    'section df df -B1 -- "$1"',
    'if command -v nvidia-smi >/dev/null 2>&1; then',
    `  section gpus ${gpuQuery}`,
    `  section gpu-apps ${appsQuery}`,
    'fi',
    'if [ -n "$2" ]; then section nonce cat -- "$2"; fi',
    'if [ -n "$3" ]; then section dir-exists test -d "$3"; fi',
    'exit 0',
  ].join('\n');
}

/** One section as the probe script prints it, for stand-ins that answer the probe with captured output. */
export function formatProbeSection(name: string, output: string, exitCode = 0): string {
  return `\n${marker} begin ${name}@@\n${output}\n${marker} end ${name} ${exitCode}@@\n`;
}

export interface ProbeSection {
  output: string;
  exitCode: number | undefined;
}

export interface NodeProbe {
  hostname?: string;
  addresses: string[];
  cpus?: number;
  memory?: MemInfo;
  disk?: DiskUsage;
  /** `absent`: no nvidia-smi on the node; `failed`: it ran and failed (driver gone, GPU fallen off the bus). */
  nvidiaSmi: 'ok' | 'absent' | 'failed';
  gpus: GpuRecord[];
  gpuApps: ComputeApp[];
  gpuHealth: GpuHealth[];
  /** What the nonce file held (undefined: not asked, or not readable there). */
  nonce?: string;
  /** Whether the required directory exists (undefined: not asked). */
  requiredDirExists?: boolean;
  /** Sections that failed or could not be read, with their output, for the operator. */
  problems: string[];
  sections: Record<string, ProbeSection>;
}

export function parseProbeSections(text: string): Record<string, ProbeSection> {
  const sections: Record<string, ProbeSection> = {};
  let current: { name: string; lines: string[] } | undefined;
  for (const line of text.split(/\r?\n/)) {
    const match = sectionPattern.exec(line);
    if (!match) {
      current?.lines.push(line);
      continue;
    }
    const [, kind, name, code] = match;
    if (kind === 'begin') {
      current = { name: name!, lines: [] };
      sections[name!] = { output: '', exitCode: undefined };
    } else if (current && current.name === name) {
      // The end marker is printed after a newline of its own: drop that one line break.
      sections[name!] = { output: current.lines.join('\n').replace(/\n$/, ''), exitCode: Number(code) };
      current = undefined;
    }
  }
  if (current) sections[current.name] = { output: current.lines.join('\n'), exitCode: undefined };
  return sections;
}

export function parseProbeOutput(text: string): NodeProbe {
  const sections = parseProbeSections(text);
  const problems: string[] = [];
  const ok = (name: string): string | undefined => {
    const section = sections[name];
    if (!section) return undefined;
    if (section.exitCode === 0) return section.output;
    problems.push(`${name}: exit ${section.exitCode ?? 'missing'}: ${section.output.trim().slice(0, 200)}`);
    return undefined;
  };
  const attempt = <T>(name: string, parse: () => T): T | undefined => {
    try {
      return parse();
    } catch (error) {
      problems.push(`${name}: ${error instanceof Error ? error.message : String(error)}`);
      return undefined;
    }
  };

  const probe: NodeProbe = {
    addresses: [],
    nvidiaSmi: 'absent',
    gpus: [],
    gpuApps: [],
    gpuHealth: [],
    problems,
    sections,
  };
  const hostname = ok('hostname')?.trim();
  if (hostname) probe.hostname = hostname;
  probe.addresses = parseHostAddresses(ok('addresses') ?? '');
  const nproc = ok('nproc');
  if (nproc !== undefined) probe.cpus = attempt('nproc', () => parseNproc(nproc));
  const meminfo = ok('meminfo');
  if (meminfo !== undefined) probe.memory = attempt('meminfo', () => parseMeminfo(meminfo));
  const df = ok('df');
  if (df !== undefined) probe.disk = parseDf(df)[0];
  if (sections.gpus) {
    const gpus = ok('gpus');
    const apps = ok('gpu-apps');
    probe.nvidiaSmi = gpus === undefined || apps === undefined ? 'failed' : 'ok';
    probe.gpus = gpus === undefined ? [] : parseGpuQueryCsv(gpus);
    probe.gpuApps = apps === undefined ? [] : parseComputeAppsCsv(apps);
    probe.gpuHealth = assessGpus(probe.gpus, probe.gpuApps);
  }
  // Answers, not health: a missing nonce or directory is judged by the caller, never a failed section here.
  if (sections.nonce?.exitCode === 0) probe.nonce = sections.nonce.output;
  if (sections['dir-exists']) probe.requiredDirExists = sections['dir-exists'].exitCode === 0;
  for (const key of ['cpus', 'memory', 'disk'] as const) if (probe[key] === undefined) delete probe[key];
  return probe;
}
