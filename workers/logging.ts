// The worker's logs: keel's own and the Temporal SDK's (its Runtime logger, and the native core's log lines, which
// are forwarded to it instead of being printed on stderr) all go through one pino logger, to one LogOutput.
import type { Logger } from 'pino';
import { stdSerializers } from 'pino';
import { createLogger, type LogOutput } from '../src/log.js';
import { installWorkerRuntime, type InstalledRuntime } from './runtime.js';

/** The SDK passes errors as `error` (an Error, which JSON would write as {}): keep their type, message and stack. */
export function withErrorsSerialized(meta: Record<string, unknown> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(meta ?? {}))
    out[key] = value instanceof Error ? stdSerializers.err(value) : value;
  return out;
}

/**
 * The worker's logger, and the process-wide Temporal Runtime installed with it (once per process: the Runtime cannot
 * be replaced). Without an output the lines are JSON on stdout, as a service manager (journald) expects.
 */
export async function installWorkerLogging(
  output?: LogOutput,
  level: string | undefined = process.env.KEEL_LOG_LEVEL,
  options: { sdkMetrics?: boolean } = {},
): Promise<{ logger: Logger; runtime: InstalledRuntime }> {
  const logger = createLogger({ name: 'keel-worker', output, level });
  const runtime = await installWorkerRuntime({ logger, sdkMetrics: options.sdkMetrics, output: output ?? 'default' });
  return { logger, runtime };
}
