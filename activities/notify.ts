// Posting a notification to a webhook. The URL is read here, from the worker's environment, by the name the spec
// gives (`urlEnv`): it never enters workflow history, and no message keel writes (a failure, a log line) contains it.
// Temporal retries a failed post on a bounded schedule (workflows/options.ts `notification`); on the last attempt, or
// when no retry can help (the variable is unset, the receiver refused the post), the activity logs and gives up.
import { ApplicationFailure, Context } from '@temporalio/activity';
import { notificationUndeliverable } from '../src/failure-types.js';
import { idempotencyKey, notificationBody } from '../src/notify/body.js';
import type { NotificationEvent, NotificationTarget } from '../src/notify/events.js';
import { classifyReply, responseText } from '../src/net/bounded-body.js';
import type { ActivityDeps } from './context.js';
import { envNameRefusal } from './env-allowlist.js';

export interface SendNotificationInput {
  webhook: NotificationTarget;
  event: NotificationEvent;
}

/** One post waits this long for the receiver's answer. */
const postTimeoutMs = 15_000;
/** A receiver's reply is read up to this (an error code or a short page); a larger one is not read. */
const replyMaxBytes = 64 * 1024;
/** A receiver's `Retry-After` is honoured up to this long. */
const longestRetryAfterMs = 5 * 60_000;

export function notifyActivities(deps: ActivityDeps) {
  /** POST the event to the webhook; the receiver's status on success. Throws to be retried, or to give up. */
  async function sendNotification({ webhook, event }: SendNotificationInput): Promise<{ status: number }> {
    const context = Context.current();
    const about = { kind: event.kind, id: event.id, urlEnv: webhook.urlEnv, attempt: context.info.attempt };
    const maxAttempts = context.info.retryPolicy?.maximumAttempts ?? 0;
    const lastAttempt = maxAttempts > 0 && context.info.attempt >= maxAttempts;
    const giveUp = (reason: string): never => {
      context.log.error('notification not delivered; giving up', { ...about, reason });
      throw ApplicationFailure.nonRetryable(reason, notificationUndeliverable);
    };
    const retry = (reason: string, nextRetryDelayMs?: number): never => {
      if (lastAttempt) giveUp(`${reason} (attempt ${context.info.attempt} of ${maxAttempts})`);
      context.log.warn('notification not delivered; retrying', { ...about, reason });
      throw ApplicationFailure.create({
        message: reason,
        type: 'NotificationFailed',
        nextRetryDelay: nextRetryDelayMs,
      });
    };

    const refusal = envNameRefusal('notify.webhooks[].urlEnv', webhook.urlEnv, deps.allowEnv);
    if (refusal) return giveUp(refusal);
    const url = webhookUrl(deps.env, webhook.urlEnv);
    if (typeof url === 'string') return giveUp(url);
    let response: Response;
    try {
      response = await fetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'idempotency-key': idempotencyKey(event.id),
          'user-agent': 'keel',
        },
        body: notificationBody(webhook.format, event),
        // a redirected POST would arrive elsewhere as a GET: a webhook URL is the final one
        redirect: 'manual',
        signal: AbortSignal.any([AbortSignal.timeout(postTimeoutMs), context.cancellationSignal]),
      });
    } catch (error) {
      if (context.cancellationSignal.aborted) throw error;
      return retry(`the receiver was not reached (${networkReason(error)})`);
    }
    // The reply's text is never recorded (a receiver must not write into run history): a one-word error code
    // (Slack's `no_text`, `invalid_payload`) is shown, anything else only as its kind and size.
    const answer = await responseText(response, replyMaxBytes, 'the receiver').catch(() => undefined);
    const code = answer?.trim();
    const said =
      answer === undefined
        ? ' (a reply too large to read)'
        : code && /^[a-z][a-z0-9_]{0,39}$/.test(code)
          ? `: ${redacted(code, url)}`
          : ` (${classifyReply(answer)})`;
    if (response.ok) return { status: response.status };
    if (response.status === 408 || response.status === 425 || response.status === 429 || response.status >= 500) {
      return retry(
        `the receiver answered ${response.status}${said}`,
        retryAfterMs(response.headers.get('retry-after')),
      );
    }
    return giveUp(`the receiver refused the notification with ${response.status}${said}`);
  }

  return { sendNotification };
}

/** The webhook's URL from the worker's environment, or why there is none (naming the variable, never its value). */
function webhookUrl(env: NodeJS.ProcessEnv, name: string): URL | string {
  const value = env[name]?.trim();
  if (!value)
    return `${name} is not set in the worker's environment: set it to the webhook's URL and restart the worker`;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `${name} does not hold a URL: set it to the webhook's URL (https://...)`;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    return `${name} holds a ${url.protocol} URL: a webhook's URL is https:// (or http://)`;
  }
  return url;
}

/** Why a post did not reach the receiver, in a word (a system error code): never the address it was sent to. */
function networkReason(error: unknown): string {
  const e = error as { name?: string; cause?: { code?: unknown } };
  if (e.name === 'TimeoutError') return `no answer within ${postTimeoutMs / 1000} s`;
  const code = e.cause?.code;
  return typeof code === 'string' && /^[A-Z0-9_]+$/.test(code) ? code : 'network error';
}

/**
 * The first line of the receiver's answer, short, with the URL and its parts removed: a server's 404 page often repeats the path, which is
 * the secret part of a webhook's URL.
 */
export function redacted(answer: string, url: URL): string {
  let text = answer.split('\n', 1)[0]!.trim().slice(0, 200);
  const secrets = [url.href, `${url.pathname}${url.search}`, url.pathname, safeDecode(url.pathname), url.search];
  for (const part of url.pathname.split('/')) if (part.length >= 6) secrets.push(part, safeDecode(part));
  for (const value of url.searchParams.values()) if (value.length >= 6) secrets.push(value);
  for (const secret of secrets.filter((s) => s.length > 1).sort((a, b) => b.length - a.length)) {
    text = text.replaceAll(secret, '[redacted]');
  }
  return text;
}

function retryAfterMs(header: string | null): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(header) - Date.now();
  return Number.isFinite(ms) && ms > 0 ? Math.min(ms, longestRetryAfterMs) : undefined;
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
