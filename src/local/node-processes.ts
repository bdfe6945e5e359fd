// Every process of one local-cluster node, found from keel's process records on that node (each launch is its own
// process group; Ray's workers are descendants of the node's `ray start --block`). Used for fault injection.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

interface ProcInfo {
  pid: number;
  ppid: number;
  pgid: number;
}

async function processTable(): Promise<ProcInfo[]> {
  const table: ProcInfo[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
      table.push({ pid: Number(entry), ppid: Number(fields[1]), pgid: Number(fields[2]) });
    } catch {
      // ended while we looked
    }
  }
  return table;
}

/** Process group ids of the node's live records (`<stateDir>/procs/<id...>/pid`, first field). */
async function recordGroups(stateDir: string): Promise<number[]> {
  const groups: number[] = [];
  const root = join(stateDir, 'procs');
  let entries: string[];
  try {
    entries = (await readdir(root, { recursive: true })).map(String);
  } catch {
    return groups;
  }
  for (const entry of entries) {
    if (!entry.endsWith('/pid') && entry !== 'pid') continue;
    const dir = join(root, entry.slice(0, -'pid'.length));
    try {
      if ((await readFile(join(dir, 'exit_code'), 'utf8').catch(() => undefined)) !== undefined) continue;
      const pid = Number((await readFile(join(dir, 'pid'), 'utf8')).trim().split(/\s+/)[0]);
      if (Number.isInteger(pid) && pid > 1) groups.push(pid);
    } catch {
      // not a record
    }
  }
  return groups;
}

/** Pids of every process of the node: members of its records' process groups and all their descendants. */
export async function nodeProcesses(stateDir: string): Promise<number[]> {
  const groups = new Set(await recordGroups(stateDir));
  if (groups.size === 0) return [];
  const table = await processTable();
  const found = new Set(table.filter((p) => groups.has(p.pgid)).map((p) => p.pid));
  let grew = true;
  while (grew) {
    grew = false;
    for (const p of table) {
      if (!found.has(p.pid) && found.has(p.ppid)) {
        found.add(p.pid);
        grew = true;
      }
    }
  }
  found.delete(process.pid);
  return [...found];
}

export async function signalNode(stateDir: string, signal: NodeJS.Signals): Promise<number[]> {
  const pids = await nodeProcesses(stateDir);
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // ended meanwhile
    }
  }
  return pids;
}
