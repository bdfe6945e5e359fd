// HTTP to the Ray dashboard: a timeout per request (AbortSignal), readable errors.
//
// node:http rather than global fetch: Node's fetch always sends `Sec-Fetch-Mode: cors`, and the dashboard (Ray 2.60)
// takes any request with a Sec-Fetch-* header for browser traffic and refuses its POSTs (HTTP 405), which would make
// job submission and stop impossible.
import http from 'node:http';
import https from 'node:https';

export interface RayHttpOptions {
  /** Dashboard base URL, e.g. `http://127.0.0.1:8265`. */
  url: string;
  /** Per-request timeout. Default 10 s. */
  timeoutMs?: number;
}

export interface RequestOptions {
  method?: 'GET' | 'POST' | 'DELETE';
  body?: unknown;
  signal?: AbortSignal;
  timeoutMs?: number;
}

export class RayApiError extends Error {
  constructor(
    readonly method: string,
    readonly url: string,
    readonly status: number,
    readonly body: string,
  ) {
    super(`${method} ${url} -> HTTP ${status}: ${lastLine(body)}`);
    this.name = 'RayApiError';
  }
}

/** The dashboard could not be reached (refused, timed out, reset): the cluster head may be down. */
export class RayUnreachableError extends Error {
  constructor(
    readonly method: string,
    readonly url: string,
    cause: unknown,
  ) {
    super(`${method} ${url} failed: ${describeCause(cause)}`, { cause });
    this.name = 'RayUnreachableError';
  }
}

export class RayHttp {
  private readonly base: string;
  private readonly timeoutMs: number;

  constructor(options: RayHttpOptions) {
    this.base = options.url.replace(/\/+$/, '');
    this.timeoutMs = options.timeoutMs ?? 10_000;
  }

  get url(): string {
    return this.base;
  }

  /** The response body as text; throws RayApiError on a non-2xx status. */
  async text(path: string, options: RequestOptions = {}): Promise<string> {
    const { status, body, url, method } = await this.send(path, options);
    if (status < 200 || status >= 300) throw new RayApiError(method, url, status, body);
    return body;
  }

  async json(path: string, options: RequestOptions = {}): Promise<unknown> {
    const body = await this.text(path, options);
    try {
      return JSON.parse(body) as unknown;
    } catch {
      throw new RayApiError(options.method ?? 'GET', this.base + path, 200, `not JSON: ${body.slice(0, 200)}`);
    }
  }

  /** Status and body without judging the status (for callers that handle 404 or 4xx themselves). */
  async send(path: string, options: RequestOptions = {}) {
    const method = options.method ?? 'GET';
    const url = this.base + path;
    const timeout = AbortSignal.timeout(options.timeoutMs ?? this.timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
    try {
      const { status, body } = await request(url, method, payload, signal);
      return { status, body, url, method };
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason ?? error;
      throw new RayUnreachableError(method, url, timeout.aborted ? timeout.reason : error);
    }
  }
}

function request(
  url: string,
  method: string,
  payload: string | undefined,
  signal: AbortSignal,
): Promise<{ status: number; body: string }> {
  const headers: http.OutgoingHttpHeaders = { accept: 'application/json' };
  if (payload !== undefined) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = Buffer.byteLength(payload);
  }
  const transport = url.startsWith('https:') ? https : http;
  return new Promise((resolve, reject) => {
    const req = transport.request(url, { method, headers, signal }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

function lastLine(body: string): string {
  const lines = body.trim().split('\n');
  return (lines.at(-1) ?? '').slice(0, 300);
}

function describeCause(cause: unknown): string {
  if (cause instanceof Error) {
    const inner = cause.cause instanceof Error ? `: ${cause.cause.message}` : '';
    return `${cause.name === 'TimeoutError' ? 'timed out' : cause.message}${inner}`;
  }
  return String(cause);
}
