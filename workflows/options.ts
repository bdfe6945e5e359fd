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
