// Activity options, named once per class of work. A step's attempts are the pipeline's own loop (so that status shows
// every attempt); inside one attempt Temporal retries what is safe to retry: a worker that shut down or died, a
// heartbeat that timed out, a node or an HTTP call that did not answer. The retry re-attaches to what is still running
// (a program by its launch id, a Ray job by its submission id, supervision at its last heartbeat). A program that ran
// and failed, or a permanent fault, ends the attempt at once (`attemptEndingTypes`).
import type { ActivityOptions, RetryPolicy } from '@temporalio/workflow';
import type { Spec } from '../src/spec/schema.js';
import { attemptEndingTypes, nonRetryableTypes, notificationUndeliverable } from '../src/failure-types.js';
import { retryMaximumInterval } from '../src/spec/retry-bounds.js';

/**
 * Retries that re-attach: from the spec's initial retry interval, doubling up to 5 minutes, 10 attempts in all (an
 * attempt is counted only once a worker picks it up, so a worker restart costs one, however long it takes).
 */
function reattaching(spec: Spec, nonRetryableErrorTypes: string[]): RetryPolicy {
  return {
    initialInterval: spec.policies.initialRetryInterval,
    backoffCoefficient: 2,
    maximumInterval: retryMaximumInterval.reattaching,
    maximumAttempts: 10,
    nonRetryableErrorTypes,
  };
}

/** Bounded checks and small API calls: seconds. */
export function quick(_spec: Spec): ActivityOptions {
  return {
    startToCloseTimeout: '2m',
    retry: { maximumAttempts: 3, initialInterval: '1s', nonRetryableErrorTypes: nonRetryableTypes },
  };
}

/**
 * Checks whose work grows with the data or the cluster (sha256 of downloaded files, input fingerprints and probes on
 * every node): up to hours on a model of terabytes or a thousand nodes, heartbeating while they work.
 */
export function checking(spec: Spec): ActivityOptions {
  return {
    startToCloseTimeout: '12h',
    heartbeatTimeout: spec.policies.heartbeatTimeout,
    retry: { maximumAttempts: 3, initialInterval: '1s', nonRetryableErrorTypes: nonRetryableTypes },
  };
}

/**
 * Stopping what keel launched, or the training job, on every node: minutes (a stop retried until Ray reports the job
 * ended, a node that does not answer waited out at once with the others), heartbeating while it works.
 */
export function stopping(spec: Spec): ActivityOptions {
  return {
    startToCloseTimeout: '15m',
    heartbeatTimeout: spec.policies.heartbeatTimeout,
    retry: { maximumAttempts: 3, initialInterval: '1s', nonRetryableErrorTypes: nonRetryableTypes },
  };
}

/**
 * Downloads, casts, conversions, cluster bring-up, job submission (idempotent by its submission id): hours,
 * heartbeating; retried by Temporal, re-attaching to the program in flight.
 */
export function transfer(spec: Spec): ActivityOptions {
  return {
    startToCloseTimeout: '48h',
    heartbeatTimeout: spec.policies.heartbeatTimeout,
    retry: reattaching(spec, attemptEndingTypes),
  };
}

/** Supervising a training job until its next checkpoint: may take hours, heartbeats often; a retry resumes it. */
export function supervise(spec: Spec): ActivityOptions {
  return {
    startToCloseTimeout: '7d',
    heartbeatTimeout: spec.policies.heartbeatTimeout,
    retry: reattaching(spec, attemptEndingTypes),
  };
}

/**
 * Checkpoint retention: deleting checkpoints of terabytes may take hours; heartbeats after every file it deletes, and
 * a retry deletes what is left of the same plan.
 */
export function retention(spec: Spec): ActivityOptions {
  return {
    startToCloseTimeout: '24h',
    heartbeatTimeout: spec.policies.heartbeatTimeout,
    retry: reattaching(spec, nonRetryableTypes),
  };
}

/** Resolving and planning a spec: pure, seconds; any failure but a permanent one is retried. */
export const prepare: ActivityOptions = {
  startToCloseTimeout: '1m',
  retry: { maximumAttempts: 5, initialInterval: '1s', nonRetryableErrorTypes: nonRetryableTypes },
};

/**
 * A webhook notification: one POST an attempt, retried from the spec's initial retry interval, doubling, 6 attempts
 * in all (about 5 minutes at the default 10 s); then the activity gives up and logs. Never fails the run.
 */
export function notification(spec: Spec): ActivityOptions {
  return {
    startToCloseTimeout: '30s',
    retry: {
      initialInterval: spec.policies.initialRetryInterval,
      backoffCoefficient: 2,
      maximumInterval: retryMaximumInterval.notification,
      maximumAttempts: 6,
      nonRetryableErrorTypes: [notificationUndeliverable],
    },
  };
}

/** Waiting for a Slurm allocation: as long as the queue takes (days on a busy partition), heartbeating its reason. */
export function allocating(spec: Spec): ActivityOptions {
  return {
    startToCloseTimeout: '30d',
    heartbeatTimeout: spec.policies.heartbeatTimeout,
    retry: reattaching(spec, nonRetryableTypes),
  };
}

/** Releasing a Slurm allocation: scancel, the grace, scancel, and the wait until squeue shows it ended. */
export function releasing(_spec: Spec): ActivityOptions {
  return {
    startToCloseTimeout: '15m',
    heartbeatTimeout: '2m',
    retry: { maximumAttempts: 10, initialInterval: '2s', nonRetryableErrorTypes: nonRetryableTypes },
  };
}
