// One Prometheus endpoint for the control worker: keel's metrics (prom-client) followed by the Temporal SDK's own,
// read from the SDK's exporter on a loopback port and passed through as they are (every SDK metric is named
// `temporal_*`, so the two expositions never share a metric name). One port to open, one scrape job to configure.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { RunsSnapshot } from './collect.js';
import { KeelMetrics } from './registry.js';

export interface MetricsServerOptions {
  host: string;
  port: number;
  collector: { collect(): Promise<RunsSnapshot> };
  /** the SDK's Prometheus exporter (`http://127.0.0.1:PORT/metrics`), when the runtime was installed with one */
  sdkMetricsUrl?: string;
  logger: Logger;
}

export interface MetricsServer {
  url: string;
  close(): Promise<void>;
}

/** How long a scrape waits for the SDK's exporter (it answers from memory, in-process). */
const sdkReadTimeoutMs = 2000;

export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const metrics = new KeelMetrics();
  // Scrapes that arrive while one is being gathered share it: a burst of scrapes queries each run once.
  let inFlight: Promise<string> | undefined;
  const exposition = async (): Promise<string> => {
    const [snapshot, sdk] = await Promise.all([options.collector.collect(), readSdkMetrics(options.sdkMetricsUrl)]);
    if (snapshot.listError) options.logger.warn({ error: snapshot.listError }, 'metrics: could not list the runs');
    metrics.update(snapshot);
    metrics.setSdkUp(sdk !== undefined || !options.sdkMetricsUrl);
    const keel = await metrics.registry.metrics();
    return sdk ? `${keel.trimEnd()}\n${sdk.trimEnd()}\n` : keel;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = new URL(req.url ?? '/', 'http://metrics').pathname;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path !== '/metrics') {
      res.writeHead(path === '/' ? 200 : 404, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(path === '/' ? 'keel worker metrics: GET /metrics\n' : 'not found: GET /metrics\n');
      return;
    }
    try {
      inFlight ??= exposition().finally(() => (inFlight = undefined));
      const body = await inFlight;
      res.writeHead(200, { 'content-type': metrics.registry.contentType });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch (error) {
      options.logger.error({ error: String(error) }, 'metrics: scrape failed');
      res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`scrape failed: ${String(error)}\n`);
    }
  };

  const server = createServer((req, res) => void handle(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function readSdkMetrics(url: string | undefined): Promise<string | undefined> {
  if (!url) return undefined;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(sdkReadTimeoutMs) });
    return res.ok ? await res.text() : undefined;
  } catch {
    return undefined;
  }
}
