// Host outputs -> typed records: /proc/meminfo, `df -B1`, `nproc`, `free -b`, `hostname -I`. Pure parsers.
import { isIP } from 'node:net';

export interface MemInfo {
  totalBytes: number;
  availableBytes?: number;
  freeBytes?: number;
  swapTotalBytes?: number;
  /** Every field, in bytes where the kernel gives kB (HugePages_* counts stay counts). */
  fields: Record<string, number>;
}

export interface DiskUsage {
  filesystem: string;
  sizeBytes: number;
  usedBytes: number;
  availableBytes: number;
  usePercent?: number;
  mountedOn: string;
}

export interface FreeMemory {
  mem: { total: number; used: number; free: number; shared?: number; buffCache?: number; available?: number };
  swap?: { total: number; used: number; free: number };
}

export class ProbeParseError extends Error {
  constructor(what: string, text: string) {
    super(`cannot parse ${what}: ${JSON.stringify(text.slice(0, 120))}`);
    this.name = 'ProbeParseError';
  }
}

export function parseMeminfo(text: string): MemInfo {
  const fields: Record<string, number> = {};
  for (const line of text.split(/\r?\n/)) {
    const match = /^([\w()]+):\s+(\d+)(?:\s+(kB))?\s*$/.exec(line);
    if (match) fields[match[1]!] = Number(match[2]) * (match[3] ? 1024 : 1);
  }
  const totalBytes = fields.MemTotal;
  if (totalBytes === undefined) throw new ProbeParseError('/proc/meminfo', text);
  const info: MemInfo = { totalBytes, fields };
  if (fields.MemAvailable !== undefined) info.availableBytes = fields.MemAvailable;
  if (fields.MemFree !== undefined) info.freeBytes = fields.MemFree;
  if (fields.SwapTotal !== undefined) info.swapTotalBytes = fields.SwapTotal;
  return info;
}

/** `df -B1 [paths...]`: one row per argument (the same filesystem may repeat). */
export function parseDf(text: string): DiskUsage[] {
  const rows: DiskUsage[] = [];
  for (const line of text.split(/\r?\n/)) {
    const match = /^(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(?:(\d+)%|-)\s+(.+?)\s*$/.exec(line);
    if (!match) continue;
    const row: DiskUsage = {
      filesystem: match[1]!,
      sizeBytes: Number(match[2]),
      usedBytes: Number(match[3]),
      availableBytes: Number(match[4]),
      mountedOn: match[6]!,
    };
    if (match[5] !== undefined) row.usePercent = Number(match[5]);
    rows.push(row);
  }
  return rows;
}

export function parseNproc(text: string): number {
  const value = text.trim();
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new ProbeParseError('nproc', text);
  return Number(value);
}

/** `free -b` (procps): a Mem: row and a Swap: row, in bytes. */
export function parseFree(text: string): FreeMemory {
  const row = (label: string) => {
    const line = text.split(/\r?\n/).find((candidate) => candidate.startsWith(`${label}:`));
    return line
      ?.slice(label.length + 1)
      .trim()
      .split(/\s+/)
      .map(Number);
  };
  const mem = row('Mem');
  if (!mem || mem.length < 3 || mem.some(Number.isNaN)) throw new ProbeParseError('free -b', text);
  const [total, used, free, shared, buffCache, available] = mem as [number, number, number, ...number[]];
  const result: FreeMemory = { mem: { total, used, free } };
  if (shared !== undefined) result.mem.shared = shared;
  if (buffCache !== undefined) result.mem.buffCache = buffCache;
  if (available !== undefined) result.mem.available = available;
  const swap = row('Swap');
  if (swap && swap.length >= 3 && !swap.some(Number.isNaN)) {
    result.swap = { total: swap[0]!, used: swap[1]!, free: swap[2]! };
  }
  return result;
}

/** `hostname -I`: the host's addresses, in the order printed; tokens that are not IP addresses are ignored. */
export function parseHostAddresses(text: string): string[] {
  return text.split(/\s+/).filter((token) => isIP(token) !== 0);
}
