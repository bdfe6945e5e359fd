// Where the supervision of a training job stands in the job's log, compactly: the byte offset read so far and the
// follower state that offset implies. Supervision heartbeats it (a retried attempt resumes from it) and returns it in
// every outcome (the next supervision of the same job starts from it), so no poll ever re-reads the log from 0.
import { z } from 'zod';
import { SlimeLogFollower, type SlimeLogEvent, type SlimeLogSummary } from './slime-log.js';

/** A line longer than this is kept cut in the cursor (the lines supervision reads are short). */
const maxPartialChars = 64 * 1024;
/** Characters of the log kept as the HTTP reader's anchor (a few lines of the trainer's). */
const tailChars = 1024;

const checkpointRef = z.object({ iteration: z.number().int(), dir: z.string() });

export const supervisionCursorSchema = z.object({
  /** the job whose log this is: a cursor of another job (a resubmission) is not used */
  jobId: z.string().min(1),
  /** byte offset in the job's log: everything before it has been read */
  offset: z.number().int().nonnegative(),
  /** a line begun before `offset` and not yet ended */
  partial: z.string().optional(),
  /**
   * the last characters read before `offset`: where the log is read over HTTP (last lines only, no byte ranges), they
   * tell where the new lines begin
   */
  tail: z.string().max(4096).optional(),
  firstRollout: z.number().int().optional(),
  lastRollout: z.number().int().optional(),
  /** when supervision first saw a rollout of this job, and last saw progress (ISO) */
  firstRolloutAt: z.string().optional(),
  /** when supervision first saw the job RUNNING (its driver started): the trainer's start-up is measured from it */
  jobRunningAt: z.string().optional(),
  lastProgressAt: z.string().optional(),
  /**
   * when the log was last read up to `offset` (ISO): the time from then until the next read is a gap in reading (a
   * worker down, the server down, a retention or a heal between two supervisions), which never counts as a hang
   */
  readAt: z.string().optional(),
  /** the job's first rollout was checked against the tracker it resumed from */
  resumeVerified: z.boolean(),
  checkpointInProgress: checkpointRef.optional(),
  lastError: z.object({ errorType: z.string(), message: z.string(), line: z.string() }).optional(),
  /** evals and rewards read and not yet returned to the workflow */
  evals: z.array(z.object({ rollout: z.number().int(), score: z.number().optional() })),
  rewards: z.array(z.object({ rollout: z.number().int(), reward: z.number() })),
});

export type SupervisionCursor = z.infer<typeof supervisionCursorSchema>;

/** A cursor for this job, or undefined (none, another job's, or not a cursor: `onInvalid` says why). */
export function cursorFor(
  value: unknown,
  jobId: string,
  onInvalid?: (problem: string) => void,
): SupervisionCursor | undefined {
  if (value === undefined || value === null) return undefined;
  const parsed = supervisionCursorSchema.safeParse(value);
  if (!parsed.success) {
    onInvalid?.(parsed.error.issues.map((i) => `${i.path.join('.') || 'cursor'}: ${i.message}`).join('; '));
    return undefined;
  }
  return parsed.data.jobId === jobId ? parsed.data : undefined;
}

/**
 * The follower state of one job's log, from a cursor or from the log's start: feed it what comes after `offset`,
 * take a cursor at any time.
 */
export class LogProgress {
  offset: number;
  readonly follower: SlimeLogFollower;
  resumeVerified: boolean;
  firstRolloutAt: number | undefined;
  jobRunningAt: number | undefined;
  lastProgressAt: number;
  /** the last characters read (at most tailChars): the HTTP log reader's anchor */
  tail: string | undefined;
  /** when the log was last read; the hang clock is accounted up to here */
  readAt: number | undefined;
  private readonly rewardByRollout = new Map<number, number>();
  private lastRolloutSeen: number | undefined;
  /** a line showing work was read since the last push */
  private sawWork = false;

  constructor(
    private readonly jobId: string,
    cursor: SupervisionCursor | undefined,
    options: { resumeVerified: boolean; now: number; rewardsAfter: number },
  ) {
    this.offset = cursor?.offset ?? 0;
    this.tail = cursor?.tail;
    this.resumeVerified = options.resumeVerified || cursor?.resumeVerified === true;
    this.firstRolloutAt = cursor?.firstRolloutAt === undefined ? undefined : Date.parse(cursor.firstRolloutAt);
    this.jobRunningAt = cursor?.jobRunningAt === undefined ? undefined : Date.parse(cursor.jobRunningAt);
    this.lastProgressAt = cursor?.lastProgressAt === undefined ? options.now : Date.parse(cursor.lastProgressAt);
    // The time nobody read the log is not time the job showed no work: the hang clock resumes where it stopped.
    if (cursor?.readAt !== undefined) {
      this.skipGap(Date.parse(cursor.readAt), options.now);
      this.readAt = options.now;
    }
    this.lastRolloutSeen = cursor?.lastRollout;
    for (const r of cursor?.rewards ?? []) this.rewardByRollout.set(r.rollout, r.reward);
    this.follower = new SlimeLogFollower({
      ...(cursor ? { summary: summaryOf(cursor), pending: cursor.partial ?? '' } : {}),
      onEvent: (event) => {
        if (workEvents.has(event.type)) this.sawWork = true;
        if (event.type !== 'rollout-stats' || event.rollout <= options.rewardsAfter) return;
        const reward = event.metrics['rollout/raw_reward'];
        if (reward !== undefined && !Number.isNaN(reward)) this.rewardByRollout.set(event.rollout, reward);
      },
    });
  }

  /** Text read from `offset` up to `nextOffset`; `restarted`: it is the log from its start (a new file). */
  push(text: string, nextOffset: number, now: number, restarted = false): void {
    if (restarted) this.follower.end();
    this.follower.push(text);
    this.offset = nextOffset;
    if (text.length > 0) this.tail = ((restarted ? '' : (this.tail ?? '')) + text).slice(-tailChars);
    this.readAt = now;
    const summary = this.follower.summary;
    // Any line of work resets the clock of the phase it belongs to (a rollout, a train step, an eval, a save).
    if (this.sawWork || summary.lastRollout !== this.lastRolloutSeen) {
      this.lastProgressAt = now;
      this.lastRolloutSeen = summary.lastRollout;
      this.sawWork = false;
    }
    if (summary.lastRollout !== undefined) this.firstRolloutAt ??= now;
  }

  /**
   * Nobody read the log from `from` to `to` (the log could not be read, or no supervision ran): that time does not
   * count toward a hang. The clock keeps the idle time it had before the gap.
   */
  skipGap(from: number, to: number): void {
    if (!(to > from)) return;
    this.lastProgressAt = Math.min(to, this.lastProgressAt + (to - from));
  }

  /** Evals read (with a score), by rollout. */
  evals(): { rollout: number; score: number }[] {
    return Object.entries(this.follower.summary.evals)
      .filter(([, e]) => typeof e.score === 'number' && !Number.isNaN(e.score))
      .map(([rollout, e]) => ({ rollout: Number(rollout), score: e.score! }));
  }

  rewards(): { rollout: number; reward: number }[] {
    return [...this.rewardByRollout].map(([rollout, reward]) => ({ rollout, reward }));
  }

  /**
   * The cursor here. `returnedUpTo`: the evals and rewards of rollouts up to this one are being returned to the
   * workflow, so the cursor keeps only later ones (none: keep all).
   */
  cursor(returnedUpTo?: number): SupervisionCursor {
    const summary = this.follower.summary;
    const pending = (rollout: number) => returnedUpTo === undefined || rollout > returnedUpTo;
    const cursor: SupervisionCursor = {
      jobId: this.jobId,
      offset: this.offset,
      resumeVerified: this.resumeVerified,
      lastProgressAt: new Date(this.lastProgressAt).toISOString(),
      ...(this.readAt === undefined ? {} : { readAt: new Date(this.readAt).toISOString() }),
      ...(this.tail === undefined ? {} : { tail: this.tail }),
      evals: Object.entries(summary.evals)
        .filter(([rollout]) => pending(Number(rollout)))
        .map(([rollout, e]) => ({ rollout: Number(rollout), ...(e.score === undefined ? {} : { score: e.score }) })),
      rewards: this.rewards().filter((r) => pending(r.rollout)),
    };
    const partial = this.follower.pending.slice(0, maxPartialChars);
    if (partial) cursor.partial = partial;
    if (summary.firstRollout !== undefined) cursor.firstRollout = summary.firstRollout;
    if (summary.lastRollout !== undefined) cursor.lastRollout = summary.lastRollout;
    if (this.firstRolloutAt !== undefined) cursor.firstRolloutAt = new Date(this.firstRolloutAt).toISOString();
    if (this.jobRunningAt !== undefined) cursor.jobRunningAt = new Date(this.jobRunningAt).toISOString();
    if (summary.checkpointInProgress) cursor.checkpointInProgress = summary.checkpointInProgress;
    if (summary.lastError) cursor.lastError = summary.lastError;
    return cursor;
  }
}

/** Lines that show the trainer working; an engine found unhealthy is not work, its recovery is. */
const workEvents: ReadonlySet<SlimeLogEvent['type']> = new Set([
  'rollout-done',
  'rollout-stats',
  'train-perf',
  'train-step',
  'eval',
  'checkpoint-saving',
  'checkpoint-saved',
  'checkpoint-loaded',
  'engines-recovered',
]);

function summaryOf(cursor: SupervisionCursor): SlimeLogSummary {
  const summary: SlimeLogSummary = { evals: {}, engineFailures: 0, enginesRecovered: 0, lines: 0 };
  for (const e of cursor.evals)
    summary.evals[e.rollout] = { metrics: {}, ...(e.score === undefined ? {} : { score: e.score }) };
  if (cursor.firstRollout !== undefined) summary.firstRollout = cursor.firstRollout;
  if (cursor.lastRollout !== undefined) summary.lastRollout = cursor.lastRollout;
  if (cursor.checkpointInProgress) summary.checkpointInProgress = cursor.checkpointInProgress;
  if (cursor.lastError) summary.lastError = cursor.lastError;
  return summary;
}
