// What keel tells an operator's webhooks: one event per thing a person should hear of, with an id that is the same
// every time the same event is sent (a retry, a replay), so that a receiver can de-duplicate. Shared by the workflows
// (which decide what happened) and the activity (which posts it). docs/notifications.md
import type { WebhookSpec } from '../spec/schema.js';

export const notificationKinds = [
  'paused',
  'resumed',
  'waiting-for-nodes',
  'node-quarantined',
  'run-failed',
  'run-completed',
  'checkpoint',
  'eval',
  'job-not-stopped',
  'allocation-pending',
] as const;

export type NotificationKind = (typeof notificationKinds)[number];

export type NotificationFieldValue = string | number | boolean | string[];

export interface NotificationEvent {
  /** stable: `<workflow id>/<first run id of its chain>/<kind>[/<natural key>]`; also the `Idempotency-Key` header */
  id: string;
  kind: NotificationKind;
  /** the run's name (spec.name) */
  run: string;
  /** the pipeline's workflow id: what `keel status`, `keel resume` take */
  workflowId: string;
  /** when keel saw it happen (ISO 8601) */
  at: string;
  /** one sentence for a person, with what to do when something is needed */
  text: string;
  /** what the event is about (by kind: restarts, the node, the checkpoint iteration, ...) */
  fields: Record<string, NotificationFieldValue>;
}

/** What the activity needs of a webhook: never its URL, only the name of the variable that holds it. */
export type NotificationTarget = Pick<WebhookSpec, 'format' | 'urlEnv'>;

/** Whether a webhook takes this kind of event: checkpoints and evals only when it opted in. */
export function webhookWants(webhook: WebhookSpec, kind: NotificationKind): boolean {
  if (kind === 'checkpoint') return webhook.checkpoints;
  if (kind === 'eval') return webhook.evals;
  return true;
}
