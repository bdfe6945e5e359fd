// HTTP to the Ray dashboard: a timeout per request (AbortSignal), readable errors.
//
// node:http rather than global fetch: Node's fetch always sends `Sec-Fetch-Mode: cors`, and the dashboard (Ray 2.60)
// takes any request with a Sec-Fetch-* header for browser traffic and refuses its POSTs (HTTP 405), which would make
// job submission and stop impossible.
import http from 'node:http';
import https from 'node:https';
import { BoundedBody, classifyReply, ReplyTooLargeError } from '../net/bounded-body.js';

export interface RayHttpOptions {
  /** Dashboard base URL, e.g. `http://127.0.0.1:8265`. */
  url: string;
  /** Per-request timeout. Default 10 s. */
  timeoutMs?: number;
  /** The largest reply read (a larger one is refused, not buffered). Default 64 MiB. */
  maxBodyBytes?: number;
}

const defaultMaxBodyBytes = 64 * 1024 * 1024;

export interface RequestOptions {
  method?: 'GET' | 'POST' | 'DELETE';
  body?: unknown;
  signal?: AbortSignal;
  timeoutMs?: number;
}

/**
 * A refused request. The message names the status and the kind of reply (never its text: a dashboard, or whatever
 * answers at its address, must not write into recorded reasons); `reason` is keel's own words, when it has them.
 */
export class RayApiError extends Error {
  constructor(
    readonly method: string,
    readonly url: string,
    readonly status: number,
    readonly body: string,
    reason?: string,
  ) {
    super(`${method} ${url} -> HTTP ${status}: ${reason ?? classifyReply(body)}`);
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
  private readonly maxBodyBytes: number;

  constructor(options: RayHttpOptions) {
    this.base = options.url.replace(/\/+$/, '');
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.maxBodyBytes = options.maxBodyBytes ?? defaultMaxBodyBytes;
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
      throw new RayApiError(options.method ?? 'GET', this.base + path, 200, body, `not JSON (${classifyReply(body)})`);
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
      const { status, body } = await request(url, method, payload, signal, this.maxBodyBytes);
      return { status, body, url, method };
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason ?? error;
      if (error instanceof ReplyTooLargeError) throw error;
      throw new RayUnreachableError(method, url, timeout.aborted ? timeout.reason : error);
    }
  }
}

function request(
  url: string,
  method: string,
  payload: string | undefined,
  signal: AbortSignal,
  maxBodyBytes: number,
): Promise<{ status: number; body: string }> {
  const headers: http.OutgoingHttpHeaders = { accept: 'application/json' };
  if (payload !== undefined) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = Buffer.byteLength(payload);
  }
  const transport = url.startsWith('https:') ? https : http;
  return new Promise((resolve, reject) => {
    const req = transport.request(url, { method, headers, signal }, (res) => {
      const body = new BoundedBody(maxBodyBytes);
      res.on('data', (chunk: Buffer) => {
        if (body.add(chunk)) return;
        // past the cap: stop reading (the reply is refused, never buffered whole)
        reject(new ReplyTooLargeError(`${method} ${url}`, maxBodyBytes));
        req.destroy();
      });
      res.on('error', reject);
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: body.text() });
        } catch (error) {
          reject(error as Error);
        }
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

function describeCause(cause: unknown): string {
  if (cause instanceof Error) {
    const inner = cause.cause instanceof Error ? `: ${cause.cause.message}` : '';
    return `${cause.name === 'TimeoutError' ? 'timed out' : cause.message}${inner}`;
  }
  return String(cause);
}
