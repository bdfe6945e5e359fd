// Where `keel demo` sends the worker's logs. The terminal carries the progress and the errors in words; the worker's
// log lines (keel's and the Temporal SDK's) go to a file whose path the demo prints, unless asked for otherwise:
//   (default)               JSON lines, level info, to .keel/logs/demo-<UTC time>.log
//   --log-file F            JSON lines to F (--log-format pretty: pretty text to F)
//   --log-format pretty     pretty-printed on stderr (pino-pretty), level warn
//   --log-format json       JSON lines on stderr, level warn
// KEEL_LOG_LEVEL overrides the level in every case.
import { join, resolve } from 'node:path';
import { logFormats, type LogFormat, type LogOutput } from '../log.js';

export interface DemoLogFlags {
  logFormat?: string;
  logFile?: string;
}

export function parseLogFormat(value: string | undefined): LogFormat | undefined {
  if (value === undefined) return undefined;
  if ((logFormats as readonly string[]).includes(value)) return value as LogFormat;
  throw new Error(`--log-format ${value}: expected one of ${logFormats.join(', ')}`);
}

export function demoLogOutput(
  flags: DemoLogFlags,
  repoRoot: string,
  now: Date = new Date(),
): { output: LogOutput; level: string } {
  const format = parseLogFormat(flags.logFormat);
  const level = process.env.KEEL_LOG_LEVEL || undefined;
  if (flags.logFile)
    return { output: { format: format ?? 'json', destination: resolve(flags.logFile) }, level: level ?? 'info' };
  if (format) return { output: { format, destination: 2 }, level: level ?? 'warn' };
  const stamp = now.toISOString().replace(/[:.]/g, '-');
  return {
    output: { format: 'json', destination: join(repoRoot, '.keel', 'logs', `demo-${stamp}.log`) },
    level: level ?? 'info',
  };
}

/** The sentence the demo prints at start (and again when the run did not succeed). */
export function describeLogOutput(output: LogOutput): string {
  if (typeof output.destination === 'string')
    return `worker logs (${output.format === 'json' ? 'JSON lines' : 'text'}): ${output.destination}`;
  return `worker logs: ${output.format === 'json' ? 'JSON lines' : 'pretty-printed'} on stderr`;
}
