// Bounds that Temporal's SDK puts on the activity options keel builds from a spec (workflows/options.ts), named once so
// that the spec refuses what the SDK would refuse at every schedule of an activity. Read from @temporalio/common's
// compileRetryPolicy and its duration parser (the `ms` package).

/**
 * The longest pause between two Temporal retries, per class of activity options that starts from
 * `policies.initialRetryInterval` (workflows/options.ts).
 */
export const retryMaximumInterval = {
  /** transfers, job submission, supervision, retention, a Slurm allocation: retries that re-attach */
  reattaching: '5m',
  /** a webhook notification */
  notification: '2m',
} as const;

/**
 * The SDK refuses a retry policy whose initial interval is longer than its maximum interval ("RetryPolicy.
 * maximumInterval cannot be less than its initialInterval"): `policies.initialRetryInterval` is the initial interval
 * of every policy above, so it may be at most the shortest of their maxima.
 */
export const initialRetryIntervalMax = retryMaximumInterval.notification;

/** The SDK's duration parser refuses a string longer than 100 characters ('0…010s' is a valid duration for keel). */
export const durationMaxLength = 100;
