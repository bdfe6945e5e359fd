// Replies of servers keel talks to (the Ray dashboard, the Hub, webhook receivers) are read up to a cap -- a reply
// that never ends, or a gigabyte of it, must not take the worker's memory -- and are never copied into a reason that
// is recorded or printed: a reason names the status and what kind of reply it was, not what it said.

/** The reply was larger than keel reads from such a server. */
export class ReplyTooLargeError extends Error {
  constructor(
    readonly what: string,
    readonly maxBytes: number,
  ) {
    super(`${what}: the reply is larger than the ${maxBytes} bytes keel reads from it; refused`);
    this.name = 'ReplyTooLargeError';
  }
}

/** Collects a reply's chunks up to `maxBytes`; `add` returns false (and keeps nothing more) once past the cap. */
export class BoundedBody {
  private readonly chunks: Uint8Array[] = [];
  private length = 0;
  constructor(readonly maxBytes: number) {}

  add(chunk: Uint8Array): boolean {
    this.length += chunk.byteLength;
    if (this.length > this.maxBytes) return false;
    this.chunks.push(chunk);
    return true;
  }

  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

/** A fetch Response's body as text, at most `maxBytes` (the stream is cancelled past it). */
export async function responseText(response: Response, maxBytes: number, what: string): Promise<string> {
  if (!response.body) return '';
  const body = new BoundedBody(maxBytes);
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return body.text();
    if (!body.add(value)) {
      await reader.cancel().catch(() => undefined);
      throw new ReplyTooLargeError(what, maxBytes);
    }
  }
}

/** What kind of reply a body is, for a reason: `a JSON reply of 120 bytes`, `an HTML page of 3 KB`, `no body`. */
export function classifyReply(body: string): string {
  const trimmed = body.trim();
  if (trimmed === '') return 'no body';
  const size = Buffer.byteLength(body);
  const bytes = size < 10_000 ? `${size} bytes` : `${Math.round(size / 1024)} KB`;
  if (/^[[{]/.test(trimmed)) return `a JSON reply of ${bytes}`;
  if (/^<(!doctype|html|\?xml|head|body)/i.test(trimmed)) return `an HTML page of ${bytes}`;
  return `a text reply of ${bytes}`;
}
