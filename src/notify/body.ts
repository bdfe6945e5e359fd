// The body a webhook receives: Slack-compatible (`{"text": ...}`, as Slack's incoming webhooks and the chat tools that
// accept their format take it) or plain JSON with the event's fields.
import type { NotificationEvent, NotificationTarget } from './events.js';

export function notificationBody(format: NotificationTarget['format'], event: NotificationEvent): string {
  if (format === 'slack') {
    return JSON.stringify({ text: `*${slackEscape(event.run)}*: ${slackEscape(event.text)}\n_event ${event.id}_` });
  }
  // the event's own fields first, so that nothing in them can shadow the envelope
  return JSON.stringify({
    ...event.fields,
    id: event.id,
    kind: event.kind,
    run: event.run,
    workflowId: event.workflowId,
    at: event.at,
    text: event.text,
  });
}

/** Slack reads `&`, `<` and `>` as markup (links, mentions): plain text escapes them. */
function slackEscape(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}

/** The event id as an HTTP header value: printable ASCII as is, anything else percent-encoded. */
export function idempotencyKey(id: string): string {
  return /^[\x21-\x7e]+$/.test(id) ? id : encodeURIComponent(id);
}
