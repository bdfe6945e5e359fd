// The executor interface: run commands and manage detached, re-attachable processes on one node.

/** A node to act on. `name` is the stable node id (defaults to `host`); `port` overrides the executor's ssh port. */
export interface NodeTarget {
  host: string;
  name?: string;
  port?: number;
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  env?: Record<string, string>;
  timeoutMs?: number;
  input?: string;
}

export interface LaunchSpec {
  /** Stable launch id, e.g. `run-abc/convert/rank-2`: segments of `[A-Za-z0-9._-]` separated by `/`. */
  id: string;
  argv: string[];
  cwd?: string;
  /** Plain (non-secret) environment of the launched program. */
  env?: Record<string, string>;
  /**
   * Secret environment: NAME on the node -> name of an env var on the control side. The value travels over stdin into
   * a 0600 file that the wrapper reads and deletes before the program starts; it never appears in argv or the record.
   */
  secretEnv?: Record<string, string>;
  /** Defaults to `<stateDir>/procs/<id>/output.log`. */
  logFile?: string;
}

export interface ProcessRecord {
  id: string;
  node: string;
  pid: number;
  /** The process group (and session) of the launched program; equal to the wrapper's pid. */
  pgid: number;
  /** The wrapper's start time in clock ticks since boot (field 22 of /proc/<pid>/stat): tells a reused pid apart. */
  startTime: string;
  argv: string[];
  cwd?: string;
  logFile: string;
  /** ISO time on the control side when the launch was requested. */
  launchedAt: string;
}

export type ProcessState = 'running' | 'exited' | 'lost';

export interface ProcessStatus extends ProcessRecord {
  /** `lost`: the record says running, but its pid is gone (or reused) and no exit code was written. */
  state: ProcessState;
  exitCode?: number;
}

export interface TailResult {
  text: string;
  nextOffset: number;
}

export interface FileRange {
  /** The bytes read, decoded (a UTF-8 sequence cut at the end is left for the next read). */
  text: string;
  /** Pass back as `offset` to read what comes after. */
  nextOffset: number;
  /** The file's size when it was read (smaller than the offset asked for: the file was replaced or truncated). */
  size: number;
  /** Bytes that came from the node for this read. */
  bytesRead: number;
}

export interface Executor {
  readonly kind: 'local' | 'ssh' | 'slurm';
  run(node: NodeTarget, argv: string[], options?: RunOptions): Promise<RunResult>;
  /** Idempotent per id: when the record shows a live process, returns it with `reattached: true`. */
  launch(node: NodeTarget, spec: LaunchSpec): Promise<{ record: ProcessRecord; reattached: boolean }>;
  /** `undefined` = never launched. */
  status(node: NodeTarget, id: string): Promise<ProcessStatus | undefined>;
  tail(node: NodeTarget, id: string, offset: number, maxBytes?: number): Promise<TailResult>;
  /** Up to `maxBytes` of any file on the node from byte `offset` on, without reading what comes before; undefined = no such file. */
  readFileRange(node: NodeTarget, path: string, offset: number, maxBytes?: number): Promise<FileRange | undefined>;
  /** TERM the process group, KILL it after the grace period; resolves when the group is gone. */
  stop(node: NodeTarget, id: string, options?: { graceMs?: number }): Promise<void>;
  /**
   * Stop every live launch whose id starts with `prefix/` (or is `prefix`) in one command on the node: all at once,
   * TERM then KILL after the grace. Resolves with how many it stopped.
   */
  stopUnder(
    node: NodeTarget,
    prefix: string,
    options?: { graceMs?: number; timeoutMs?: number },
  ): Promise<{ stopped: number }>;
  readFile(node: NodeTarget, path: string): Promise<string | undefined>;
  writeFile(node: NodeTarget, path: string, content: string): Promise<void>;
  /** Ends ssh control masters (no-op for local). */
  close(): Promise<void>;
}

export function nodeName(node: NodeTarget): string {
  return node.name ?? node.host;
}
