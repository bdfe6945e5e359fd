// Notifications, decided in workflow code and posted by an activity (activities/notify.ts) to the spec's webhooks.
// Training announces what changed in its state since it last announced: paused for an operator, resumed, waiting for
// nodes, a node quarantined, and (opt-in per webhook) checkpoints and evals. The pipeline announces how the run ended.
// Each event's id is derived from the workflow's identity and the event's natural key (the failure it follows, the
// node, the iteration), so a retry or a replay sends the same id. A notification never fails a run: its outcome is
// caught, and the workflow waits for the ones in flight only before it ends (so none is abandoned). docs/notifications.md
import { CancellationScope, log, patched, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import type { Spec } from '../src/spec/schema.js';
import {
  webhookWants,
  type NotificationEvent,
  type NotificationFieldValue,
  type NotificationKind,
} from '../src/notify/events.js';
import type { StepStatus, TrainingStatus } from './definitions.js';
import { notification } from './options.js';
import { patches } from './patches.js';

/** What training last announced: carried in its state across continue-as-new, so that nothing is announced twice. */
export interface Announced {
  phase: string;
  waiting: boolean;
  quarantined: string[];
  checkpoint: number;
  eval: number;
}

class Notifier {
  private readonly pending = new Set<Promise<void>>();
  private readonly activities: Activities;

  constructor(
    private readonly spec: Spec,
    private readonly runKey: string,
  ) {
    this.activities = proxyActivities<Activities>(notification(spec));
  }

  /** The run has webhooks, and it runs code that knows notifications (a run of an earlier keel replays without). */
  enabled(): boolean {
    return (this.spec.notify?.webhooks.length ?? 0) > 0 && patched(patches.notifications);
  }

  /** Send to every webhook that takes this kind; never throws, never waits. */
  send(kind: NotificationKind, key: string | number | undefined, text: string, fields: Fields = {}): void {
    const info = workflowInfo();
    const event: NotificationEvent = {
      id: [info.workflowId, info.firstExecutionRunId, kind, ...(key === undefined ? [] : [String(key)])].join('/'),
      kind,
      run: this.spec.name,
      workflowId: this.runKey,
      at: new Date().toISOString(),
      text: clip(text),
      fields: Object.fromEntries(
        Object.entries(fields)
          .filter(([, v]) => v !== undefined)
          .map(([k, v]) => [k, typeof v === 'string' ? clip(v) : v]),
      ) as Record<string, NotificationFieldValue>,
    };
    for (const webhook of this.spec.notify?.webhooks ?? []) {
      if (!webhookWants(webhook, kind)) continue;
      // Not cancelled with the run: a cancelled training still delivers what it announced before.
      const sent = CancellationScope.nonCancellable(() =>
        this.activities.sendNotification({ webhook: { format: webhook.format, urlEnv: webhook.urlEnv }, event }),
      ).then(
        () => undefined,
        (error: unknown) =>
          log.warn('notification not delivered', { id: event.id, urlEnv: webhook.urlEnv, error: String(error) }),
      );
      this.pending.add(sent);
      void sent.finally(() => this.pending.delete(sent));
    }
  }

  /** Every notification sent so far delivered or given up (the activity's retries are bounded); never throws. */
  async delivered(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }
}

type Fields = Record<string, NotificationFieldValue | undefined>;

/** A sentence or a field is at most this long (a failure's message can quote a long log line): history stays small. */
const longestText = 2000;

function clip(text: string): string {
  return text.length <= longestText ? text : `${text.slice(0, longestText - 1)}…`;
}

type TrainingState = TrainingStatus & { announced?: Announced };

/** The phase in which training waits for an operator after its crash-loop budget. */
const pausedPhase = 'paused-crash-loop';

/**
 * Training's notifications: `observe(phase)` at every phase change (and after a checkpoint) announces what changed
 * in `state` since the last announcement; `delivered()` before the workflow ends or continues as new.
 */
export function trainingNotifications(spec: Spec, runKey: string, state: TrainingState) {
  const notifier = new Notifier(spec, runKey);
  const observe = (phase = state.phase): void => {
    if (!notifier.enabled()) return;
    const last = (state.announced ??= {
      phase: state.phase,
      waiting: state.waitingFor !== undefined,
      quarantined: [...(state.quarantined ?? [])],
      checkpoint: state.checkpoints.at(-1)?.iteration ?? -1,
      eval: state.evals.reduce((latest, e) => Math.max(latest, e.rollout), -1),
    });
    const announcing = { notifier, spec, runKey, state, last };
    announceNodes(announcing);
    announcePhase(announcing, phase);
    announceProgress(announcing);
  };
  /** The job may still run: neither the dashboard nor the fallback on the head stopped it (patches.jobStop). */
  const jobNotStopped = (stop: NonNullable<TrainingStatus['jobStop']>): void => {
    if (!notifier.enabled() || !patched(patches.jobStop)) return;
    notifier.send(
      'job-not-stopped',
      stop.jobId,
      `training's Ray job ${stop.jobId} could not be stopped: ${stop.detail}`,
      {
        jobId: stop.jobId,
        detail: stop.detail,
      },
    );
  };
  return { observe, jobNotStopped, delivered: () => notifier.delivered() };
}

interface Announcing {
  notifier: Notifier;
  spec: Spec;
  runKey: string;
  state: TrainingState;
  last: Announced;
}

/** The failure a heal, a wait or a pause follows: its number is the natural key of those events. */
function lastFailure(state: TrainingState) {
  const failure = state.failures.at(-1);
  return { failureNo: state.failures.length, failure, after: failure ? ` after ${failure.kind}` : '' };
}

/** Nodes quarantined since the last announcement; a wait for nodes beginning or ending. */
function announceNodes({ notifier, spec, runKey, state, last }: Announcing): void {
  const { failureNo, failure, after } = lastFailure(state);
  for (const node of state.quarantined ?? []) {
    if (last.quarantined.includes(node)) continue;
    notifier.send(
      'node-quarantined',
      `${failureNo}/${node}`,
      `node ${node} did not answer${after}: keel quarantined it (left out of the cluster; a spare takes its place if there is one)`,
      { node, failure: failure?.kind },
    );
  }
  last.quarantined = [...(state.quarantined ?? [])];

  const waiting = state.waitingFor !== undefined;
  if (waiting && !last.waiting) {
    notifier.send(
      'waiting-for-nodes',
      failureNo,
      `training is waiting for nodes${after}: ${state.waitingFor}. It probes again (backing off to ` +
        `${spec.policies.nodeWaitMax}) and resumes when enough answer: bring nodes back, or add some (the addNodes ` +
        `update of workflow ${runKey}-training)`,
      { waitingFor: state.waitingFor, failure: failure?.kind },
    );
  } else if (!waiting && last.waiting) {
    notifier.send('resumed', `${failureNo}/nodes`, 'enough nodes answer again: training resumes', {
      after: 'waiting-for-nodes',
      nodes: state.activeNodes,
    });
  }
  last.waiting = waiting;
}

/** Paused for an operator after the crash-loop budget, and resumed by one. */
function announcePhase({ notifier, spec, runKey, state, last }: Announcing, phase: string): void {
  if (phase === last.phase) return;
  const { failureNo, failure } = lastFailure(state);
  const { maxRestarts, window } = spec.policies.crashLoop;
  if (phase === pausedPhase) {
    notifier.send(
      'paused',
      failureNo,
      `training is paused for an operator: its job failed again after ${maxRestarts} restart(s) within ${window} ` +
        `(crash-loop budget)${failure ? `; last failure ${failure.kind}: ${failure.message}` : ''}. Fix the cause, ` +
        `then keel resume ${runKey} (or keel cancel ${runKey})`,
      { reason: 'crash-loop', restarts: state.restarts, failure: failure?.kind, failureMessage: failure?.message },
    );
  } else if (last.phase === pausedPhase && phase !== 'cancelled') {
    notifier.send('resumed', `${failureNo}/operator`, 'an operator resumed the run: training restarts its job', {
      after: 'paused',
    });
  }
  last.phase = phase;
}

/** Checkpoints and evals recorded since the last announcement (sent only to webhooks that opted in). */
function announceProgress({ notifier, state, last }: Announcing): void {
  for (const checkpoint of state.checkpoints) {
    if (checkpoint.iteration <= last.checkpoint) continue;
    const score = checkpoint.evalScore === undefined ? '' : ` (eval ${checkpoint.evalScore})`;
    notifier.send('checkpoint', checkpoint.iteration, `checkpoint ${checkpoint.iteration} saved${score}`, {
      iteration: checkpoint.iteration,
      evalScore: checkpoint.evalScore,
    });
    last.checkpoint = checkpoint.iteration;
  }
  for (const e of state.evals) {
    if (e.rollout <= last.eval) continue;
    notifier.send('eval', e.rollout, `eval at rollout ${e.rollout}: ${e.score}`, {
      rollout: e.rollout,
      score: e.score,
    });
    last.eval = e.rollout;
  }
}

/**
 * A Slurm run still waiting for its allocation after `notifyPendingAfter` (patches.slurmPending): announced once,
 * with Slurm's reason, not waited for (the wait goes on).
 */
export function announceAllocationPending(
  spec: Spec,
  runKey: string,
  pending: { jobId?: string; jobName: string; state?: string; reason?: string; waitedMs: number },
): { delivered: () => Promise<void> } {
  const notifier = new Notifier(spec, runKey);
  if (notifier.enabled()) {
    const job = pending.jobId ? `Slurm job ${pending.jobId} (${pending.jobName})` : `the Slurm job ${pending.jobName}`;
    const why = pending.reason && pending.reason !== 'None' ? `: ${pending.reason}` : '';
    notifier.send(
      'allocation-pending',
      pending.jobId,
      `the run has waited ${spoken(pending.waitedMs)} for its allocation; ${job} is ` +
        `${pending.state ?? 'not listed yet'}${why}`,
      { jobId: pending.jobId, jobName: pending.jobName, state: pending.state, reason: pending.reason },
    );
  }
  return { delivered: () => notifier.delivered() };
}

/** 90 s, 45 min, 2.5 h */
function spoken(ms: number): string {
  if (ms < 120_000) return `${Math.round(ms / 1000)} s`;
  if (ms < 2 * 3_600_000) return `${Math.round(ms / 60_000)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

/** The pipeline's end: `run-completed` or `run-failed`, waited for (never throwing) so that the run ends after it. */
export async function announceRunEnd(
  spec: Spec,
  runKey: string,
  outcome: 'succeeded' | 'failed',
  steps: StepStatus[],
): Promise<void> {
  const notifier = new Notifier(spec, runKey);
  if (!notifier.enabled()) return;
  const train = steps.find((s) => s.kind === 'train' && s.state === 'succeeded')?.outputs;
  const trained =
    typeof train?.lastCheckpoint === 'number'
      ? `; training ended at checkpoint ${train.lastCheckpoint}` +
        (typeof train.lastCheckpointEvalScore === 'number' ? ` (eval ${train.lastCheckpointEvalScore})` : '') +
        (typeof train.restarts === 'number' ? `, ${train.restarts} restart(s)` : '')
      : '';
  const failed = steps.find((s) => s.state === 'failed');
  if (outcome === 'failed' && failed) {
    notifier.send(
      'run-failed',
      undefined,
      `the run failed: step ${failed.id} failed after ${failed.attempts} attempt(s): ${failed.reason ?? 'unknown error'}`,
      { step: failed.id, attempts: failed.attempts, reason: failed.reason },
    );
  } else {
    const ran = steps.filter((s) => s.state === 'succeeded').length;
    const skipped = steps.filter((s) => s.state === 'skipped').length;
    notifier.send('run-completed', undefined, `the run completed: ${ran} step(s) ran, ${skipped} skipped${trained}`, {
      ran,
      skipped,
      lastCheckpoint: train?.lastCheckpoint as number | undefined,
      lastCheckpointEvalScore: train?.lastCheckpointEvalScore as number | undefined,
      restarts: train?.restarts as number | undefined,
    });
  }
  await notifier.delivered();
}
