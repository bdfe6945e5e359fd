// When a run on a Slurm allocation stops for the allocation's time limit: right after a checkpoint, when the next one
// would not be saved before the allocation ends, less the time kept for stopping the job and releasing the nodes.
// Pure: the training workflow calls it with its own clock.

export interface TimeLimitDecision {
  stop: boolean;
  /** what training says about it (for the log and the run's record) */
  why: string;
}

export function stopForTimeLimit(input: {
  /** now, in ms since the epoch */
  now: number;
  /** when Slurm ends the allocation (ISO); none: no limit */
  endsAt?: string;
  /** how long the checkpoint just saved took, from the one before it (or from the job's submission) */
  intervalMs: number;
  /** the time kept before the end for stopping the job and releasing the allocation */
  marginMs: number;
}): TimeLimitDecision {
  if (input.endsAt === undefined) return { stop: false, why: 'the allocation has no time limit' };
  const leftMs = Date.parse(input.endsAt) - input.now;
  const neededMs = input.intervalMs + input.marginMs;
  const figures = `${seconds(leftMs)} left; the next checkpoint needs about ${seconds(input.intervalMs)} and stopping ${seconds(input.marginMs)}`;
  return leftMs < neededMs
    ? { stop: true, why: `the allocation ends before the next checkpoint could be saved: ${figures}` }
    : { stop: false, why: figures };
}

function seconds(ms: number): string {
  return `${Math.round(ms / 1000)} s`;
}
