// Histories are committed to the repository: before one is written, the recording machine's own paths (the checkout,
// temp dirs) and worker identities (pid@host) in it are replaced by neutral ones. Replay never reads them -- they
// are activity inputs and failure texts, not decisions of workflow code.
import { tmpdir } from 'node:os';
import type proto from '@temporalio/proto';

type History = proto.temporal.api.history.v1.IHistory;

export function scrubHistory(history: History, checkout: string): History {
  const replacements: [string, string][] = [
    [checkout.replace(/\/$/, ''), '/srv/keel'],
    [tmpdir().replace(/\/$/, ''), '/tmp'],
  ];
  const scrubText = (text: string): string => replacements.reduce((out, [from, to]) => out.split(from).join(to), text);
  const visit = (value: unknown, key?: string): unknown => {
    if (typeof value === 'string') return key === 'identity' ? 'keel-worker' : scrubText(value);
    if (value instanceof Uint8Array) return new TextEncoder().encode(scrubText(new TextDecoder().decode(value)));
    if (Array.isArray(value)) return value.map((v) => visit(v));
    if (value && typeof value === 'object' && !Buffer.isBuffer(value) && !isLong(value)) {
      for (const [k, v] of Object.entries(value)) (value as Record<string, unknown>)[k] = visit(v, k);
    }
    return value;
  };
  return visit(history) as History;
}

function isLong(value: object): boolean {
  return 'low' in value && 'high' in value && 'unsigned' in value;
}
