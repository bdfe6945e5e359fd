// The Temporal runtime of a worker process, installed once before any connection: every log line of the SDK -- its
// TypeScript side, workflow and activity `log` calls, and the Rust core's own lines (forwarded) -- goes to pino; and,
// when asked, the SDK's own Prometheus exporter runs on a loopback port for the worker's metrics endpoint to merge.
import { DefaultLogger, Runtime, type LogLevel } from '@temporalio/worker';
import type { Logger } from 'pino';
import { freePort } from '../src/local/net.js';
import type { LogOutput } from '../src/log.js';
import { withErrorsSerialized } from './logging.js';

export interface InstalledRuntime {
  /** where the SDK's exporter answers (`http://127.0.0.1:PORT/metrics`), when installed with one */
  sdkMetricsUrl?: string;
}

let installed: InstalledRuntime | undefined;
let installedOutput: string | undefined;

/** keel's log level (pino's names) as the SDK's. */
export function sdkLogLevel(level: string | undefined): LogLevel {
  const byName: Record<string, LogLevel> = {
    trace: 'TRACE',
    debug: 'DEBUG',
    info: 'INFO',
    warn: 'WARN',
    error: 'ERROR',
    fatal: 'ERROR',
    silent: 'ERROR',
  };
  return byName[(level ?? 'info').toLowerCase()] ?? 'INFO';
}

const severities: LogLevel[] = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'];

/**
 * Install the process's Temporal runtime (once). The core's lines are filtered at `level` (its dependencies' at WARN
 * or above) before they cross into JavaScript; `sdkMetrics` starts the SDK's Prometheus exporter on 127.0.0.1.
 */
export async function installWorkerRuntime(options: {
  logger: Logger;
  sdkMetrics?: boolean;
  /** where `logger` writes: a second install for another output is refused (the runtime keeps the first logger) */
  output?: LogOutput | 'default';
}): Promise<InstalledRuntime> {
  const output = JSON.stringify(options.output ?? 'default');
  if (installed) {
    if (installedOutput !== output)
      throw new Error('the worker logging is already set up for this process with another output');
    if (options.sdkMetrics && !installed.sdkMetricsUrl)
      throw new Error('the Temporal runtime is already installed without metrics: start the worker with metrics first');
    return installed;
  }
  const { logger } = options;
  const level = sdkLogLevel(logger.level);
  const other = severities[Math.max(severities.indexOf(level), severities.indexOf('WARN'))]!;
  const runtimeLogger = new DefaultLogger(level, (entry) => {
    const method = entry.level.toLowerCase() as 'trace' | 'debug' | 'info' | 'warn' | 'error';
    logger[method](withErrorsSerialized(entry.meta), entry.message);
  });
  const logging = { filter: { core: level, other }, forward: {} };
  installedOutput = output;
  if (!options.sdkMetrics) {
    Runtime.install({ logger: runtimeLogger, telemetryOptions: { logging } });
    return (installed = {});
  }
  // The exporter needs a fixed address: take a free loopback port, and another if it was taken meanwhile.
  for (let attempt = 1; ; attempt++) {
    const bindAddress = `127.0.0.1:${await freePort('127.0.0.1')}`;
    try {
      Runtime.install({
        logger: runtimeLogger,
        telemetryOptions: { logging, metrics: { prometheus: { bindAddress } } },
      });
      return (installed = { sdkMetricsUrl: `http://${bindAddress}/metrics` });
    } catch (error) {
      if (attempt >= 3 || !/address already in use/i.test(String(error))) throw error;
    }
  }
}
