// Activity options, named once per class of work. Retries of a step are the pipeline's own loop (so that status
// shows every attempt); inside one attempt Temporal retries only transient infrastructure failures of quick calls.
import type { ActivityOptions } from '@temporalio/workflow';
import type { Spec } from '../src/spec/schema.js';
import { nonRetryableTypes } from './definitions.js';

/** Checks, probes, small API calls: seconds. */
export function quick(_spec: Spec): ActivityOptions {
  return {
    startToCloseTimeout: '2m',
    retry: { maximumAttempts: 3, initialInterval: '1s', nonRetryableErrorTypes: nonRetryableTypes },
  };
}

/** Downloads, casts, conversions, cluster bring-up: hours, heartbeating; one attempt per pipeline attempt. */
export function transfer(spec: Spec): ActivityOptions {
  return {
    startToCloseTimeout: '48h',
    heartbeatTimeout: spec.policies.heartbeatTimeout,
    retry: { maximumAttempts: 1 },
  };
}

/** Supervising a training job until its next checkpoint: may take hours, heartbeats often. */
export function supervise(spec: Spec): ActivityOptions {
  return {
    startToCloseTimeout: '7d',
    heartbeatTimeout: spec.policies.heartbeatTimeout,
    retry: { maximumAttempts: 1 },
  };
}

/** Resolving and planning a spec: pure, seconds; any failure but a permanent one is retried. */
export const prepare: ActivityOptions = {
  startToCloseTimeout: '1m',
  retry: { maximumAttempts: 5, initialInterval: '1s', nonRetryableErrorTypes: nonRetryableTypes },
};

/** Deleting checkpoints (terabytes each at R1 scale): may take hours, heartbeats as it goes. */
export function retention(spec: Spec): ActivityOptions {
  return {
    startToCloseTimeout: '12h',
    heartbeatTimeout: spec.policies.heartbeatTimeout,
    retry: { maximumAttempts: 5, initialInterval: '5s', nonRetryableErrorTypes: nonRetryableTypes },
  };
}
