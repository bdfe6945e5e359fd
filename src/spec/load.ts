// Loading a spec at the edge (CLI, client): YAML or JSON files, MPI hostfiles, `--set path=value` overrides.
import { readFile } from 'node:fs/promises';
import YAML from 'yaml';
import {
  deepMerge,
  mergeOverrides,
  overrideAt,
  resolveSpecInput,
  type SpecProblem,
  type SpecResult,
} from './resolve.js';

export interface SpecRequest {
  /** a YAML/JSON spec file (a full spec, or { preset, overrides }) */
  file?: string;
  preset?: string;
  /** `rollout.numRollout=100`; the value is read as YAML (numbers, booleans, lists) */
  sets?: string[];
  /** YAML/JSON files merged on top, in order */
  overlays?: string[];
}

export async function readSpecFile(path: string): Promise<unknown> {
  const text = await readFile(path, 'utf8');
  try {
    return YAML.parse(text, { prettyErrors: true });
  } catch (error) {
    throw new Error(`${path}: not valid YAML/JSON: ${(error as Error).message}`);
  }
}

/** MPI hostfile lines `ip slot=8` (comments with #, blank lines ignored). */
export function parseHostfile(text: string): { host: string; gpus: number }[] {
  const nodes: { host: string; gpus: number }[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) return;
    const match = /^(\S+)(?:\s+slots?=(\d+))?(?:\s+.*)?$/.exec(line);
    if (!match) throw new Error(`hostfile line ${i + 1}: expected 'ip slot=N', got '${raw}'`);
    nodes.push({ host: match[1]!, gpus: match[2] ? Number(match[2]) : 8 });
  });
  return nodes;
}

export function parseSet(expr: string): Record<string, unknown> {
  const eq = expr.indexOf('=');
  if (eq <= 0) throw new Error(`--set expects path=value, got '${expr}'`);
  const path = expr.slice(0, eq).trim();
  const text = expr.slice(eq + 1);
  let value: unknown;
  try {
    value = YAML.parse(text);
  } catch {
    value = text;
  }
  // `k=null` (or `k=~`) removes the key; an empty value is the empty string.
  return overrideAt(path, value === undefined || (value === null && text.trim() === '') ? text : value);
}

/** Build the raw request (preset + overrides, or a full spec) from CLI-style inputs; hostfiles are read here. */
export async function buildSpecRequest(request: SpecRequest): Promise<unknown> {
  let overrides: unknown = {};
  for (const overlay of request.overlays ?? []) overrides = mergeOverrides(overrides, await readSpecFile(overlay));
  for (const expr of request.sets ?? []) overrides = mergeOverrides(overrides, parseSet(expr));

  let raw: unknown;
  if (request.file) {
    const fromFile = await readSpecFile(request.file);
    raw = isPresetRequest(fromFile)
      ? { preset: fromFile.preset, overrides: mergeOverrides(fromFile.overrides ?? {}, overrides) }
      : deepMerge(fromFile, overrides);
  } else if (request.preset) {
    raw = { preset: request.preset, overrides };
  } else {
    throw new Error('give a spec file or --preset NAME');
  }
  return importHostfile(raw);
}

function isPresetRequest(value: unknown): value is { preset: string; overrides?: Record<string, unknown> } {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { preset?: unknown }).preset === 'string' &&
    !('cluster' in value) &&
    !('model' in value)
  );
}

async function importHostfile(raw: unknown): Promise<unknown> {
  const holder = isPresetRequest(raw) ? (raw.overrides ?? {}) : (raw as Record<string, unknown>);
  const cluster = holder.cluster as Record<string, unknown> | undefined;
  const hostfile = cluster?.hostfile;
  if (typeof hostfile !== 'string') return raw;
  let text: string;
  try {
    text = await readFile(hostfile, 'utf8');
  } catch (error) {
    throw new Error(`cluster.hostfile: cannot read '${hostfile}': ${(error as Error).message}`);
  }
  cluster!.nodes = parseHostfile(text);
  return raw;
}

export async function loadSpec(request: SpecRequest): Promise<SpecResult> {
  let raw: unknown;
  try {
    raw = await buildSpecRequest(request);
  } catch (error) {
    const problem: SpecProblem = { path: request.file ?? '(input)', message: (error as Error).message };
    return { ok: false, problems: [problem] };
  }
  return resolveSpecInput(raw);
}
