// The failure taxonomy, listed once: the `type` of every ApplicationFailure keel throws on purpose. Activities,
// workflows, the client and the CLI all read it from here.

/** Permanent failures: fail at once, never retried by Temporal or by the pipeline's step loop. */
export const failureTypes = {
  invalidSpec: 'InvalidSpec',
  planError: 'PlanError',
  configError: 'ConfigError',
  badInput: 'BadInput',
  resumeMismatch: 'ResumeMismatch',
  crashLoop: 'CrashLoop',
} as const;

export const nonRetryableTypes: string[] = Object.values(failureTypes);

/**
 * A program that keel launched ran and failed (exit code != 0, or a gang member failed). Temporal does not retry the
 * activity for it (that would re-attach to the same failed record); the pipeline's step loop launches a new attempt.
 * Everything else an activity throws (a worker shut down, a heartbeat timed out, a node did not answer) is retried
 * by Temporal, and the next attempt re-attaches to what is still running.
 */
export const programFailureTypes = {
  programFailed: 'ProgramFailed',
  gangMemberFailed: 'GangMemberFailed',
  incompleteOutputs: 'IncompleteOutputs',
} as const;

export const attemptEndingTypes: string[] = [...nonRetryableTypes, ...Object.values(programFailureTypes)];

/**
 * A notification no retry can deliver (its variable is unset or holds no http(s) URL, the receiver refused it with a
 * 4xx): the activity gives up at once and logs. A notification never fails a run, whatever its outcome.
 */
export const notificationUndeliverable = 'NotificationUndeliverable';

/**
 * A permanent failure anywhere in a failure's chain of causes (an activity's, or a child workflow's own activity's):
 * marked non-retryable, or of a permanent type. No new attempt can help.
 */
export function isPermanentFailure(error: unknown): boolean {
  for (let e = error as FailureLike | undefined; e; e = e.cause) {
    if ((e.type && nonRetryableTypes.includes(e.type)) || e.nonRetryable) return true;
  }
  return false;
}

interface FailureLike {
  type?: string;
  nonRetryable?: boolean;
  cause?: FailureLike;
}
