// The worker's logs: keel's own and the Temporal SDK's (its Runtime logger, and the native core's log lines, which
// are forwarded to it instead of being printed on stderr) all go through one pino logger, to one LogOutput.
import { DefaultLogger, Runtime, type LogLevel } from '@temporalio/worker';
import { stdSerializers } from 'pino';
import { createLogger, type LogOutput } from '../src/log.js';

/** The SDK passes errors as `error` (an Error, which JSON would write as {}): keep their type, message and stack. */
function withErrorsSerialized(meta: Record<string, unknown> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(meta ?? {}))
    out[key] = value instanceof Error ? stdSerializers.err(value) : value;
  return out;
}

let installed: LogOutput | 'default' | undefined;

const sdkLevels: readonly LogLevel[] = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'];

function sdkLevel(level: string | undefined): LogLevel {
  const upper = (level ?? 'info').toUpperCase() as LogLevel;
  return sdkLevels.includes(upper) ? upper : 'INFO';
}

/**
 * Install the process-wide Temporal Runtime with keel's logger (once per process: the Runtime cannot be replaced).
 * Without an output the lines are JSON on stdout, as a service manager (journald) expects.
 */
export function installWorkerLogging(output?: LogOutput, level: string | undefined = process.env.KEEL_LOG_LEVEL): void {
  if (installed) {
    if (JSON.stringify(installed) !== JSON.stringify(output ?? 'default'))
      throw new Error('the worker logging is already set up for this process with another output');
    return;
  }
  installed = output ?? 'default';
  const logger = createLogger({ name: 'keel-worker', output, level });
  Runtime.install({
    logger: new DefaultLogger(sdkLevel(level), (entry) => {
      const method = entry.level.toLowerCase() as 'trace' | 'debug' | 'info' | 'warn' | 'error';
      logger[method](withErrorsSerialized(entry.meta), entry.message);
    }),
    telemetryOptions: { logging: { forward: {} } },
  });
}
