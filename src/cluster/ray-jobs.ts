// The Ray Jobs REST API (`/api/jobs/`), with submission made idempotent by the submission id.
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { RayApiError, RayHttp, type RayHttpOptions } from './ray-http.js';

export const rayJobStatuses = ['PENDING', 'RUNNING', 'STOPPED', 'SUCCEEDED', 'FAILED'] as const;
export type RayJobStatus = (typeof rayJobStatuses)[number];
export const terminalJobStatuses: readonly RayJobStatus[] = ['STOPPED', 'SUCCEEDED', 'FAILED'];

export function isTerminalStatus(status: RayJobStatus): boolean {
  return terminalJobStatuses.includes(status);
}

export interface RayJob {
  submissionId: string;
  /** The driver's Ray job id (hex), once the driver has connected. */
  jobId?: string;
  status: RayJobStatus;
  entrypoint: string;
  message?: string;
  errorType?: string;
  startTime?: number;
  endTime?: number;
  metadata: Record<string, string>;
  runtimeEnv: Record<string, unknown>;
  driverExitCode?: number;
  driverNodeId?: string;
}

export interface SubmitJobInput {
  entrypoint: string;
  submissionId: string;
  runtimeEnv?: Record<string, unknown>;
  metadata?: Record<string, string>;
  entrypointNumCpus?: number;
  entrypointNumGpus?: number;
  entrypointResources?: Record<string, number>;
}

export interface SubmitJobResult {
  job: RayJob;
  /** false: a job with this submission id already existed and is returned instead. */
  created: boolean;
}

/** A job with this submission id exists but runs another entrypoint: resubmitting it would not be the same job. */
export class RayJobConflictError extends Error {
  constructor(
    readonly submissionId: string,
    readonly existing: RayJob,
  ) {
    super(`Ray job ${submissionId} already exists with another entrypoint: ${existing.entrypoint}`);
    this.name = 'RayJobConflictError';
  }
}

/** waitForStatus gave up: the deadline passed, or the job ended in another status. */
export class RayJobWaitError extends Error {
  constructor(
    readonly submissionId: string,
    readonly lastStatus: RayJobStatus | undefined,
    readonly wanted: readonly RayJobStatus[],
    readonly reason: 'timeout' | 'ended',
  ) {
    super(
      reason === 'ended'
        ? `Ray job ${submissionId} ended ${lastStatus} while waiting for ${wanted.join('|')}`
        : `Ray job ${submissionId} did not reach ${wanted.join('|')} in time (last status ${lastStatus ?? 'unknown'})`,
    );
    this.name = 'RayJobWaitError';
  }
}

const jobDetails = z.object({
  submission_id: z.string().nullish(),
  job_id: z.string().nullish(),
  type: z.string().optional(),
  status: z.enum(rayJobStatuses),
  entrypoint: z.string(),
  message: z.string().nullish(),
  error_type: z.string().nullish(),
  start_time: z.number().nullish(),
  end_time: z.number().nullish(),
  metadata: z.record(z.string(), z.string()).nullish(),
  runtime_env: z.record(z.string(), z.unknown()).nullish(),
  driver_exit_code: z.number().nullish(),
  driver_node_id: z.string().nullish(),
});

export interface LogSlice {
  text: string;
  /** Pass back as `offset` to read only what comes after (a byte offset in the job's log, UTF-8). */
  nextOffset: number;
  /** Bytes transferred: the whole log, whatever the offset. */
  bytesRead: number;
  /** The log was shorter than the offset (rotated, or another job): this is the log from its start. */
  restarted: boolean;
}

export interface WaitOptions {
  timeoutMs?: number;
  pollMs?: number;
  signal?: AbortSignal;
}

export class RayJobsClient {
  private readonly http: RayHttp;

  constructor(options: RayHttpOptions) {
    this.http = new RayHttp(options);
  }

  /**
   * Submit, or recognise the job already submitted under this id (a retried activity, a lost response) and return
   * it. Throws RayJobConflictError when that job runs another entrypoint.
   */
  async submitJob(input: SubmitJobInput, signal?: AbortSignal): Promise<SubmitJobResult> {
    const body: Record<string, unknown> = { entrypoint: input.entrypoint, submission_id: input.submissionId };
    if (input.runtimeEnv) body.runtime_env = input.runtimeEnv;
    if (input.metadata) body.metadata = input.metadata;
    if (input.entrypointNumCpus !== undefined) body.entrypoint_num_cpus = input.entrypointNumCpus;
    if (input.entrypointNumGpus !== undefined) body.entrypoint_num_gpus = input.entrypointNumGpus;
    if (input.entrypointResources) body.entrypoint_resources = input.entrypointResources;

    const response = await this.http.send('/api/jobs/', { method: 'POST', body, signal });
    const accepted = response.status >= 200 && response.status < 300;
    // Ray answers a duplicate id with a traceback ending in "... already exists" (HTTP 400 or 500 by version).
    if (!accepted && !/already exists/.test(response.body)) {
      throw new RayApiError(response.method, response.url, response.status, response.body);
    }
    const job = await this.getJob(input.submissionId, signal);
    if (!job)
      throw new RayApiError(
        'GET',
        `${this.http.url}/api/jobs/${input.submissionId}`,
        404,
        '',
        'the job vanished after its submission',
      );
    if (!accepted && job.entrypoint !== input.entrypoint) throw new RayJobConflictError(input.submissionId, job);
    return { job, created: accepted };
  }

  /** The job, or undefined when no job has this id. */
  async getJob(submissionId: string, signal?: AbortSignal): Promise<RayJob | undefined> {
    const response = await this.http.send(`/api/jobs/${encodeURIComponent(submissionId)}`, { signal });
    if (response.status === 404) return undefined;
    if (response.status !== 200) throw new RayApiError(response.method, response.url, response.status, response.body);
    return toJob(jobDetails.parse(JSON.parse(response.body)));
  }

  /** Submitted jobs (drivers started outside the Jobs API, which have no submission id, are left out). */
  async listJobs(signal?: AbortSignal): Promise<RayJob[]> {
    const body = z.array(jobDetails).parse(await this.http.json('/api/jobs/', { signal }));
    return body.filter((job) => job.submission_id).map(toJob);
  }

  /**
   * The job's output from byte `offset` on. Ray returns the whole log (its tail endpoint is a websocket), so every
   * call transfers all of it and this slices (supervision reads the driver's log file by byte range instead:
   * job-log.ts). An offset past the end (the log was rotated or the job resubmitted) restarts from 0.
   */
  async getLogs(submissionId: string, offset = 0, signal?: AbortSignal): Promise<LogSlice> {
    const body = z
      .object({ logs: z.string() })
      .parse(await this.http.json(`/api/jobs/${encodeURIComponent(submissionId)}/logs`, { signal }));
    const bytes = Buffer.from(body.logs, 'utf8');
    const restarted = offset > bytes.length;
    const text = bytes.subarray(restarted ? 0 : offset).toString('utf8');
    return { text, nextOffset: bytes.length, bytesRead: bytes.length, restarted };
  }

  /**
   * The last `lines` lines of the job's driver log, read on the node that holds it (the state API's log endpoint):
   * cheap on a long job's large log, where getLogs transfers everything. Ray 2.60 refuses a submission id without
   * the driver's node id, so the job is looked up first; before a driver node is known the full log is sliced.
   */
  async tailLogs(submissionId: string, lines: number, signal?: AbortSignal): Promise<string> {
    const job = await this.getJob(submissionId, signal);
    if (!job) throw new RayApiError('GET', `${this.http.url}/api/jobs/${submissionId}`, 404, '', 'no such job');
    if (!job.driverNodeId) {
      const { text } = await this.getLogs(submissionId, 0, signal);
      return lastLines(text, lines);
    }
    const query = new URLSearchParams({ submission_id: submissionId, node_id: job.driverNodeId, lines: String(lines) });
    return this.http.text(`/api/v0/logs/file?${query.toString()}`, { signal });
  }

  /**
   * The last `lines` lines of a job's driver log, read by the agent on the driver's node (`/api/v0/logs/file`, which
   * seeks back from the end of the file: its cost follows `lines`, not the log's size). The dashboard's HTTP APIs offer
   * no byte range of a job's log: this is the only read over HTTP that does not transfer the whole log.
   */
  async tailLogLines(
    submissionId: string,
    driverNodeId: string,
    lines: number,
    signal?: AbortSignal,
    timeoutMs?: number,
  ): Promise<string> {
    const query = new URLSearchParams({ submission_id: submissionId, node_id: driverNodeId, lines: String(lines) });
    return this.http.text(`/api/v0/logs/file?${query.toString()}`, { signal, timeoutMs });
  }

  /**
   * Ask Ray to stop the job. Ray answers whether the job's supervisor actor was still alive to be asked, not whether the
   * job was running: true for a moment after the status reads STOPPED, false once the supervisor has exited.
   */
  async stopJob(submissionId: string, signal?: AbortSignal): Promise<boolean> {
    const body = z
      .object({ stopped: z.boolean() })
      .parse(await this.http.json(`/api/jobs/${encodeURIComponent(submissionId)}/stop`, { method: 'POST', signal }));
    return body.stopped;
  }

  /** Delete an ended job's record (Ray refuses while it runs). */
  async deleteJob(submissionId: string, signal?: AbortSignal): Promise<boolean> {
    const body = z
      .object({ deleted: z.boolean() })
      .parse(await this.http.json(`/api/jobs/${encodeURIComponent(submissionId)}`, { method: 'DELETE', signal }));
    return body.deleted;
  }

  /** Poll until the job's status is one of `statuses` (or terminal, when it can no longer reach them). */
  async waitForStatus(
    submissionId: string,
    statuses: readonly RayJobStatus[],
    options: WaitOptions = {},
  ): Promise<RayJob> {
    const deadline = Date.now() + (options.timeoutMs ?? 60_000);
    let last: RayJob | undefined;
    for (;;) {
      last = await this.getJob(submissionId, options.signal);
      if (last && statuses.includes(last.status)) return last;
      if (last && isTerminalStatus(last.status))
        throw new RayJobWaitError(submissionId, last.status, statuses, 'ended');
      if (Date.now() >= deadline) throw new RayJobWaitError(submissionId, last?.status, statuses, 'timeout');
      await sleep(options.pollMs ?? 1000, undefined, { signal: options.signal });
    }
  }
}

function lastLines(text: string, count: number): string {
  if (count <= 0) return '';
  const lines = text.split('\n');
  const trailingNewline = lines.at(-1) === '';
  if (trailingNewline) lines.pop();
  return lines.slice(-count).join('\n') + (trailingNewline ? '\n' : '');
}

function toJob(details: z.infer<typeof jobDetails>): RayJob {
  const job: RayJob = {
    submissionId: details.submission_id ?? '',
    status: details.status,
    entrypoint: details.entrypoint,
    metadata: details.metadata ?? {},
    runtimeEnv: details.runtime_env ?? {},
  };
  if (details.job_id) job.jobId = details.job_id;
  if (details.message) job.message = details.message;
  if (details.error_type) job.errorType = details.error_type;
  if (details.start_time) job.startTime = details.start_time;
  if (details.end_time) job.endTime = details.end_time;
  if (details.driver_exit_code !== null && details.driver_exit_code !== undefined) {
    job.driverExitCode = details.driver_exit_code;
  }
  if (details.driver_node_id) job.driverNodeId = details.driver_node_id;
  return job;
}
