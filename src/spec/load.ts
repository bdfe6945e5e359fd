// Loading a spec at the edge (CLI, client): YAML or JSON files, MPI hostfiles, `--set path=value` overrides.
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import YAML from 'yaml';
import { maxSpecBytes } from './guard.js';
import { controlCharacter, describeName, hostProblem } from './names.js';
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

/** A regular file of at most `limit` bytes, read as UTF-8 (never a FIFO, a device or a directory). */
async function readBoundedFile(path: string, limit: number, what: string): Promise<string> {
  // Without blocking: a FIFO named as a spec or a hostfile is refused below instead of waited on.
  const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new Error(`${path}: not a regular file (a ${what} is a text file)`);
    if (info.size > limit)
      throw new Error(`${path}: ${info.size} bytes, over the limit of ${limit} for a ${what} (a few KB is usual)`);
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}

export async function readSpecFile(path: string): Promise<unknown> {
  const text = await readBoundedFile(path, maxSpecBytes, 'spec');
  try {
    return YAML.parse(text, { prettyErrors: true });
  } catch (error) {
    throw new Error(`${path}: not valid YAML/JSON: ${(error as Error).message}`);
  }
}

const maxHostfileBytes = 1 << 20;
const maxSlots = 1024;

/**
 * MPI hostfile lines `ip slot=8` or `ip slots=8` (comments with #, blank lines ignored; no slot count: 8). Anything
 * else on a line -- another field, a count that is not a whole number, a host that is not a host name or an IP
 * address, a control character -- is an error naming the line.
 */
export function parseHostfile(text: string): { host: string; gpus: number }[] {
  const nodes: { host: string; gpus: number }[] = [];
  text.split('\n').forEach((raw, i) => {
    const where = `hostfile line ${i + 1}`;
    const withoutComment = raw.replace(/#.*/, '');
    if (controlCharacter.test(withoutComment.replace(/[\t\r]/g, '')))
      throw new Error(`${where}: contains a control character: ${describeName(raw)}`);
    const [host, ...fields] = withoutComment.trim().split(/\s+/).filter(Boolean);
    if (host === undefined) return;
    const problem = hostProblem(host);
    if (problem) throw new Error(`${where}: host ${describeName(host)} ${problem}`);
    let gpus = 8;
    if (fields.length > 1) throw new Error(`${where}: expected 'ip slot=N', got ${describeName(raw.trim())}`);
    if (fields[0] !== undefined) {
      const slots = /^slots?=(\d{1,4})$/.exec(fields[0]);
      if (!slots)
        throw new Error(
          `${where}: ${describeName(fields[0])} is not 'slot=N' or 'slots=N' with a whole number N (max_slots and other fields are not read)`,
        );
      gpus = Number(slots[1]);
      if (gpus > maxSlots) throw new Error(`${where}: slot=${gpus} is over ${maxSlots} GPUs per node`);
    }
    nodes.push({ host, gpus });
  });
  if (nodes.length === 0) throw new Error('the hostfile lists no hosts');
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
    if (isPresetRequest(fromFile)) {
      // A key beside `preset` would be dropped silently (only `overrides` change a preset): refuse it.
      const extra = Object.keys(fromFile).find((key) => key !== 'preset' && key !== 'overrides');
      if (extra !== undefined)
        throw new FieldError(
          extra,
          `is beside preset in ${request.file}: a preset file has only preset and overrides; move it under overrides (overrides.${extra})`,
        );
    }
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

/** A problem of one field found while building the request (the hostfile it names). */
class FieldError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
  }
}

async function importHostfile(raw: unknown): Promise<unknown> {
  const holder = isPresetRequest(raw) ? (raw.overrides ?? {}) : (raw as Record<string, unknown>);
  const cluster = holder.cluster as Record<string, unknown> | undefined;
  const hostfile = cluster?.hostfile;
  if (typeof hostfile !== 'string') return raw;
  let text: string;
  try {
    text = await readBoundedFile(hostfile, maxHostfileBytes, 'hostfile');
  } catch (error) {
    throw new FieldError('cluster.hostfile', `cannot read '${hostfile}': ${(error as Error).message}`);
  }
  try {
    cluster!.nodes = parseHostfile(text);
  } catch (error) {
    throw new FieldError('cluster.hostfile', `${hostfile}: ${(error as Error).message}`);
  }
  return raw;
}

export async function loadSpec(request: SpecRequest): Promise<SpecResult> {
  let raw: unknown;
  try {
    raw = await buildSpecRequest(request);
  } catch (error) {
    const problem: SpecProblem =
      error instanceof FieldError
        ? { path: error.path, message: error.message.slice(error.path.length + 2) }
        : { path: request.file ?? '(input)', message: (error as Error).message };
    return { ok: false, problems: [problem] };
  }
  return resolveSpecInput(raw);
}
