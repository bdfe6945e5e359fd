// Durations as the spec writes them ('500ms', '30s', '10m', '2h', '7d') to milliseconds. Pure.
const unitMs: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function durationMs(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(text);
  if (!match) throw new Error(`not a duration: '${text}'`);
  return Number(match[1]) * unitMs[match[2]!]!;
}
