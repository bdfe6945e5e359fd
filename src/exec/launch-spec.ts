// Validation of launch specs and rendering of what the node-side scripts receive.
import { posix } from 'node:path';
import { quote } from 'shell-quote';
import { registerSecretValue } from '../log.js';
import { InvalidLaunchSpecError, MissingSecretError } from './errors.js';
import type { LaunchSpec, ProcessRecord } from './types.js';

const idSegment = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;
const envName = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A launch id is a relative path of safe segments: no `..`, no leading dot, no empty segment. */
export function validateLaunchId(id: string): string {
  const segments = id.split('/');
  if (id.length === 0 || id.length > 200 || !segments.every((s) => idSegment.test(s))) {
    throw new InvalidLaunchSpecError(
      `invalid launch id ${JSON.stringify(id)}: use segments of [A-Za-z0-9._-] (not starting with a dot) joined by '/'`,
    );
  }
  return id;
}

export function validateEnvNames(env: Record<string, string> | undefined, what: string): void {
  for (const name of Object.keys(env ?? {})) {
    if (!envName.test(name)) throw new InvalidLaunchSpecError(`invalid ${what} name ${JSON.stringify(name)}`);
  }
}

export function requireAbsolute(path: string, what: string): string {
  if (!posix.isAbsolute(path)) throw new InvalidLaunchSpecError(`${what} must be an absolute path, got ${path}`);
  return path;
}

export function recordDir(stateDir: string, id: string): string {
  return posix.join(stateDir, 'procs', validateLaunchId(id));
}

/** `NAME=VALUE` words preceded by their count, as the run and wrapper scripts expect them. */
export function envArgs(env: Record<string, string> | undefined): string[] {
  const pairs = Object.entries(env ?? {}).map(([name, value]) => `${name}=${value}`);
  return [String(pairs.length), ...pairs];
}

/**
 * The content of the node's 0600 `secret.env`: one `export NAME=<quoted value>` line per secret, read from the control
 * side's environment. Values are registered with the logger's redaction.
 */
export function renderSecretEnvFile(
  secretEnv: Record<string, string> | undefined,
  controlEnv: NodeJS.ProcessEnv = process.env,
): string | undefined {
  const entries = Object.entries(secretEnv ?? {});
  if (entries.length === 0) return undefined;
  validateEnvNames(secretEnv, 'secret env');
  return entries
    .map(([name, source]) => {
      const value = controlEnv[source];
      if (value === undefined) throw new MissingSecretError(source);
      registerSecretValue(value);
      return `export ${name}=${quote([value])}\n`;
    })
    .join('');
}

/** The record JSON without its closing brace; the wrapper appends pid, pgid and start time. */
export function recordPrefix(record: Omit<ProcessRecord, 'pid' | 'pgid' | 'startTime'>): string {
  return JSON.stringify(record).slice(0, -1);
}

export function validateLaunchSpec(spec: LaunchSpec): void {
  validateLaunchId(spec.id);
  if (spec.argv.length === 0 || spec.argv[0] === '') throw new InvalidLaunchSpecError(`launch ${spec.id}: empty argv`);
  validateEnvNames(spec.env, 'env');
  validateEnvNames(spec.secretEnv, 'secret env');
  if (spec.logFile !== undefined) requireAbsolute(spec.logFile, `launch ${spec.id}: logFile`);
}
