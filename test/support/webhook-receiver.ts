// A webhook receiver for tests: a real HTTP server on loopback that records every POST (path, headers, JSON body)
// and answers what the test asks of it (200 by default; a status for the first N posts to a path).
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedPost {
  path: string;
  headers: IncomingHttpHeaders;
  body: Record<string, unknown>;
  /** what the receiver answered */
  status: number;
}

export interface WebhookReceiver {
  /** `http://127.0.0.1:<port>` */
  origin: string;
  posts: ReceivedPost[];
  /** answer `status` (with `text` and `headers`) to the next `times` posts to `path` */
  failNext(path: string, times: number, status: number, text?: string, headers?: Record<string, string>): void;
  close(): Promise<void>;
}

export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const posts: ReceivedPost[] = [];
  const failures = new Map<string, { times: number; status: number; text: string; headers: Record<string, string> }>();
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const path = request.url ?? '';
      const failure = failures.get(path);
      const status = failure && failure.times > 0 ? failure.status : 200;
      if (failure) failure.times--;
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
      } catch {
        body = { unparsable: Buffer.concat(chunks).toString('utf8') };
      }
      if (request.method === 'POST') posts.push({ path, headers: request.headers, body, status });
      response.writeHead(status, { 'content-type': 'text/plain', ...(status === 200 ? {} : failure?.headers) });
      response.end(status === 200 ? 'ok' : (failure?.text ?? 'unavailable'));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    posts,
    failNext(path, times, status, text = 'unavailable', headers = {}) {
      failures.set(path, { times, status, text, headers });
    },
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close').catch(() => undefined);
    },
  };
}

/** A loopback URL nothing listens on (a receiver that is down): a port taken, then released. */
export async function closedOrigin(): Promise<string> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  return `http://127.0.0.1:${port}`;
}
