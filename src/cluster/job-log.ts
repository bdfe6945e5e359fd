// A Ray job's driver log, read a bounded piece at a time, so that following a job for weeks costs the same per poll on
// the first day as on the last.
//
// Ray 2.x writes the output of a submitted job's entrypoint to `<temp dir>/session_latest/logs/job-driver-<submission
// id>.log` on the node that runs the driver (the job agent there serves it). Its HTTP APIs return that file whole
// (`GET /api/jobs/<id>/logs`), stream it from its start (`/api/jobs/<id>/logs/tail`, a websocket), or return its last N
// lines (`GET /api/v0/logs/file?submission_id&node_id&lines`, read backwards from the end by the agent); none takes a
// byte offset (ray/dashboard/modules/log, Ray 2.60). So the reader reads the file itself on the driver's node through
// the executor (`tail -c +N | head -c M`: tail seeks to the offset). When the driver's node is not one keel knows or
// the file is not where Ray's defaults put it, it falls back to HTTP, and says so: the log's last lines, as many as
// the job writes between two polls, placed after what was read by the last characters read before (the anchor, kept
// in the supervision cursor). Offsets stay byte offsets of the file, so a later read of the file carries on.
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
  /** Over HTTP: more lines came than the largest read takes; the lines between were skipped. */
  gap?: boolean;
}

/** Lines asked for by the HTTP fallback at first, at least, and at most (a read of a few MB at trainer line lengths). */
const tailLinesFirst = 256;
const tailLinesMin = 64;
const tailLinesMax = 20_000;

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

  /**
   * The log from byte `offset` on (at most maxBytes of it from the file). `job`: its latest status, when known.
   * `anchor`: the last characters read before `offset` (the HTTP fallback places the log's last lines by them).
   */
  async read(job: RayJob | undefined, offset: number, signal?: AbortSignal, anchor?: string): Promise<JobLogChunk> {
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
    // The driver's node is known once the driver started: from then on only the log's last lines travel.
    if (job?.driverNodeId && (offset === 0 || anchor))
      return this.readLastLines(job.driverNodeId, offset, anchor, signal);
    // Before the driver starts (the log is a few lines), or a cursor with no anchor (written by keel 0.4): all of it.
    const slice = await this.options.jobs.getLogs(this.options.submissionId, offset, signal);
    return {
      text: slice.text,
      nextOffset: slice.nextOffset,
      bytesRead: slice.bytesRead,
      via: 'http',
      restarted: slice.restarted,
    };
  }

  private tailLines = tailLinesFirst;

  /**
   * The log's last lines over HTTP, placed after `offset` by the anchor: asks for about twice the lines the last poll
   * brought, four times more when the anchor is not among them, and skips ahead (a gap) past tailLinesMax.
   */
  private async readLastLines(
    driverNodeId: string,
    offset: number,
    anchor: string | undefined,
    signal?: AbortSignal,
  ): Promise<JobLogChunk> {
    let bytesRead = 0;
    for (;;) {
      const lines = this.tailLines;
      const text = await this.options.jobs.tailLogLines(this.options.submissionId, driverNodeId, lines, signal, 60_000);
      const size = Buffer.byteLength(text, 'utf8');
      bytesRead += size;
      // fewer lines than asked for: this is the whole log
      const whole = newlines(text) < lines - 1;
      const at = anchor ? text.lastIndexOf(anchor) : -1;
      if (offset === 0 && whole) return this.chunk(text, size, bytesRead, false);
      if (anchor && at >= 0) {
        const fresh = text.slice(at + anchor.length);
        this.tailLines = Math.min(tailLinesMax, Math.max(tailLinesMin, 2 * newlines(fresh) + tailLinesMin));
        return this.chunk(fresh, offset + Buffer.byteLength(fresh, 'utf8'), bytesRead, false);
      }
      // the whole log, and what was read is not in it: a new log (the job was resubmitted under this id)
      if (whole && anchor) return { ...this.chunk(text, size, bytesRead, false), restarted: true };
      if (lines >= tailLinesMax) {
        return { ...this.chunk(text, offset + size, bytesRead, false), gap: true };
      }
      this.tailLines = Math.min(tailLinesMax, lines * 4);
    }
  }

  private chunk(text: string, nextOffset: number, bytesRead: number, restarted: boolean): JobLogChunk {
    return { text, nextOffset, bytesRead, via: 'http', restarted };
  }

  private fallBack(reason: string): void {
    if (this.fallback !== undefined) return;
    this.fallback = reason;
    this.options.onFallback?.(reason);
  }
}

function newlines(text: string): number {
  let count = 0;
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) count++;
  return count;
}
