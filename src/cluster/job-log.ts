// A Ray job's driver log, read a byte range at a time, so that following a job for weeks costs the same per poll on
// the first day as on the last.
//
// Ray 2.x writes the output of a submitted job's entrypoint to `<temp dir>/session_latest/logs/job-driver-<submission
// id>.log` on the node that runs the driver (the job agent there serves it); its HTTP APIs return that file whole
// (`GET /api/jobs/<id>/logs`) or its last N lines (`/api/v0/logs/file`), never a byte range. So the reader reads
// the file itself on the driver's node through the executor (`tail -c +N | head -c M`: tail seeks to the offset).
// When the driver's node is not one keel knows or the file is not where Ray's defaults put it, it falls back to the
// whole log over HTTP (the same bytes, so offsets carry over), and says so.
import type { Executor, NodeTarget } from '../exec/index.js';
import type { RayJob, RayJobsClient } from './ray-jobs.js';

export interface JobLogLocation {
  node: NodeTarget;
  path: string;
}

export interface JobLogChunk {
  text: string;
  /** The byte offset to read from next time. */
  nextOffset: number;
  /** Bytes this read transferred: up to `maxBytes` from the file, the whole log over HTTP. */
  bytesRead: number;
  via: 'file' | 'http';
  /** The log was shorter than the offset (a new file): read again from its start. */
  restarted: boolean;
}

export interface JobLogReaderOptions {
  jobs: RayJobsClient;
  executor: Executor;
  submissionId: string;
  /** Where the driver's log is, given the driver's Ray node id; undefined when that node is not one keel knows. */
  locate: (driverNodeId: string) => Promise<JobLogLocation | undefined>;
  /** At most this many bytes per read (a reader behind catches up over several reads). Default 1 MiB. */
  maxBytes?: number;
  /** Called once when the reader falls back to the whole log over HTTP. */
  onFallback?: (reason: string) => void;
}

/** `<temp dir>/session_latest/logs/job-driver-<id>.log`: where Ray writes a submitted job's driver output. */
export function jobDriverLogPath(rayTempDir: string, submissionId: string): string {
  return `${rayTempDir.replace(/\/+$/, '')}/session_latest/logs/job-driver-${submissionId}.log`;
}

/** Ray's temp dir on a node started without --temp-dir: `$RAY_TMPDIR`, else `$TMPDIR/ray`, else `/tmp/ray`. */
export function defaultRayTempDir(env: Record<string, string | undefined>): string {
  if (env.RAY_TMPDIR) return env.RAY_TMPDIR;
  return `${(env.TMPDIR ?? '/tmp').replace(/\/+$/, '')}/ray`;
}

export class JobLogReader {
  private location: JobLogLocation | undefined;
  private located = false;
  private fallback: string | undefined;

  constructor(private readonly options: JobLogReaderOptions) {}

  /** The log from byte `offset` on (at most maxBytes of it from the file). `job`: its latest status, when known. */
  async read(job: RayJob | undefined, offset: number, signal?: AbortSignal): Promise<JobLogChunk> {
    const maxBytes = this.options.maxBytes ?? 1 << 20;
    if (!this.located && job?.driverNodeId) {
      this.location = await this.options.locate(job.driverNodeId);
      this.located = true;
      if (!this.location) this.fallBack(`the driver's node ${job.driverNodeId} is not one of the run's nodes`);
    }
    if (this.location && this.fallback === undefined) {
      const { node, path } = this.location;
      let range = await this.options.executor.readFileRange(node, path, offset, maxBytes);
      let restarted = false;
      if (range && range.size < offset) {
        range = await this.options.executor.readFileRange(node, path, 0, maxBytes);
        restarted = true;
      }
      if (range)
        return { text: range.text, nextOffset: range.nextOffset, bytesRead: range.bytesRead, via: 'file', restarted };
      // No file yet is normal before the driver starts; a running driver without one writes it elsewhere.
      if (job?.status === 'PENDING') return { text: '', nextOffset: offset, bytesRead: 0, via: 'file', restarted };
      this.fallBack(`no driver log at ${path} on ${node.name ?? node.host}`);
    }
    const slice = await this.options.jobs.getLogs(this.options.submissionId, offset, signal);
    return {
      text: slice.text,
      nextOffset: slice.nextOffset,
      bytesRead: slice.bytesRead,
      via: 'http',
      restarted: slice.restarted,
    };
  }

  private fallBack(reason: string): void {
    if (this.fallback !== undefined) return;
    this.fallback = reason;
    this.options.onFallback?.(reason);
  }
}
