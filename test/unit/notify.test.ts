// Notifications at the edges: the spec names the variable that holds a webhook's URL, never the URL; the bodies a
// receiver gets; and the `sendNotification` activity against a real HTTP receiver on loopback: what it retries, what
// it gives up on at once, and that no message it writes contains the URL.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { ApplicationFailure } from '@temporalio/common';
import { notifyActivities, redacted } from '../../activities/notify.js';
import { idempotencyKey, notificationBody } from '../../src/notify/body.js';
import type { NotificationEvent } from '../../src/notify/events.js';
import { plan } from '../../src/plan/index.js';
import { resolveSpecInput, resolveSpecOrThrow } from '../../src/spec/index.js';
import { closedOrigin, startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.js';

const slackUrl = 'https://hooks.slack.com/services/T0000/B0000/abcdefghijklmnop';

function problems(webhook: unknown): string[] {
  const r = resolveSpecInput({ preset: 'tiny-local', overrides: { notify: { webhooks: [webhook] } } });
  return r.ok ? [] : r.problems.map((p) => `${p.path}: ${p.message}`);
}

describe('spec: notify.webhooks', () => {
  it('a URL where the variable name goes is refused, naming the field and the fix, without repeating the URL', () => {
    for (const value of [slackUrl, 'hooks.slack.com/services/T0000/B0000/x', '//example.org/hook']) {
      const found = problems({ urlEnv: value });
      assert.equal(found.length, 1, found.join('\n'));
      assert.match(
        found[0]!,
        /^notify\.webhooks\[0\]\.urlEnv: must name the env var that holds the URL \(e\.g\. urlEnv: SLACK_WEBHOOK_URL\), not the URL itself: the URL is a secret/,
      );
      assert.ok(!found[0]!.includes('hooks.slack.com'), 'the URL is not repeated');
    }
  });
  it('`url:` instead of `urlEnv:` names the field to use', () => {
    assert.deepEqual(problems({ url: slackUrl }), [
      'notify.webhooks[0].urlEnv: required field is missing',
      'notify.webhooks[0].url: unknown field -- the URL is a secret, never a spec value: name the env var that holds it (urlEnv: SLACK_WEBHOOK_URL)',
    ]);
  });
  it('the variable must be a webhook variable, the format one keel knows', () => {
    assert.deepEqual(problems({ urlEnv: 'AWS_SECRET_ACCESS_KEY' }), [
      'notify.webhooks[0].urlEnv: must contain HOOK (e.g. SLACK_WEBHOOK_URL): this field names a variable of that kind',
    ]);
    assert.deepEqual(problems({ urlEnv: 'slack hook' }), [
      'notify.webhooks[0].urlEnv: must be an environment variable name (letters, digits, _), not a value',
    ]);
    assert.match(problems({ urlEnv: 'SLACK_WEBHOOK_URL', format: 'teams' })[0]!, /^notify\.webhooks\[0\]\.format: /);
  });
  it('defaults: json, no checkpoints, no evals; notify is absent unless given', () => {
    const spec = resolveSpecOrThrow({
      preset: 'tiny-local',
      overrides: { notify: { webhooks: [{ urlEnv: 'SLACK_WEBHOOK_URL' }] } },
    });
    assert.deepEqual(spec.notify, {
      webhooks: [{ urlEnv: 'SLACK_WEBHOOK_URL', format: 'json', checkpoints: false, evals: false }],
    });
    assert.equal(resolveSpecOrThrow({ preset: 'tiny-local' }).notify, undefined);
  });
  it('a Slack webhook URL anywhere else in a spec is a secret the plan refuses', () => {
    const spec = resolveSpecOrThrow({ preset: 'tiny-local', overrides: { rayHead: { jobEnv: { ALERTS: slackUrl } } } });
    const finding = plan(spec).findings.find((f) => f.path === 'rayHead.jobEnv.ALERTS');
    assert.equal(finding?.severity, 'error');
    assert.match(finding.message, /looks like a Slack webhook URL/);
    assert.match(finding.fix ?? '', /notify\.webhooks\[\]\.urlEnv: SLACK_WEBHOOK_URL/);
  });
});

const event: NotificationEvent = {
  id: 'keel-r1-training/0193a1b2-0000-7000-8000-000000000000/paused/3',
  kind: 'paused',
  run: 'r1',
  workflowId: 'keel-r1',
  at: '2026-11-30T03:00:00.000Z',
  text: 'training is paused for an operator: <job-crashed> & more',
  fields: { reason: 'crash-loop', restarts: 3, id: 'not the id' },
};

describe('bodies', () => {
  it('slack: {"text"} only, markup characters escaped, the event id on its last line', () => {
    const body = JSON.parse(notificationBody('slack', event)) as Record<string, unknown>;
    assert.deepEqual(Object.keys(body), ['text']);
    assert.equal(
      body.text,
      `*r1*: training is paused for an operator: &lt;job-crashed&gt; &amp; more\n_event ${event.id}_`,
    );
  });
  it("json: the envelope and the event's fields; a field never shadows the envelope", () => {
    assert.deepEqual(JSON.parse(notificationBody('json', event)), {
      reason: 'crash-loop',
      restarts: 3,
      id: event.id,
      kind: 'paused',
      run: 'r1',
      workflowId: 'keel-r1',
      at: event.at,
      text: event.text,
    });
  });
  it('the Idempotency-Key header is the id, percent-encoded only when it is not printable ASCII', () => {
    assert.equal(idempotencyKey(event.id), event.id);
    assert.equal(idempotencyKey('keel-é/x y'), 'keel-%C3%A9%2Fx%20y');
  });
});

describe('the sendNotification activity, against a real receiver', () => {
  let receiver: WebhookReceiver;
  before(async () => {
    receiver = await startWebhookReceiver();
  });
  after(async () => {
    await receiver?.close();
  });

  const secretPath = '/services/T0000/B0000/s3cretpath0123';
  const send = (env: Record<string, string>, info: { attempt?: number; maximumAttempts?: number } = {}) =>
    new MockActivityEnvironment({
      attempt: info.attempt ?? 1,
      retryPolicy: { maximumAttempts: info.maximumAttempts ?? 6 },
    }).run(notifyActivities({ cwd: '/', env }).sendNotification, {
      webhook: { format: 'json' as const, urlEnv: 'TEST_HOOK_URL' },
      event,
    });
  const failureOf = async (promise: Promise<unknown>): Promise<ApplicationFailure> => {
    const error = await promise.then(
      () => assert.fail('expected the post to fail'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof ApplicationFailure, String(error));
    return error;
  };

  it('posts the body with the id as Idempotency-Key, and returns the status', async () => {
    const result = await send({ TEST_HOOK_URL: `${receiver.origin}${secretPath}` });
    assert.deepEqual(result, { status: 200 });
    const post = receiver.posts.at(-1)!;
    assert.equal(post.path, secretPath);
    assert.equal(post.headers['idempotency-key'], event.id);
    assert.equal(post.headers['content-type'], 'application/json');
    assert.equal(post.body.id, event.id);
  });

  it('a 404 that repeats the path is given up at once; the message names the kind of reply, never its text', async () => {
    receiver.failNext(secretPath, 1, 404, `Cannot POST ${secretPath}`);
    const failure = await failureOf(send({ TEST_HOOK_URL: `${receiver.origin}${secretPath}` }));
    assert.equal(failure.nonRetryable, true);
    assert.equal(failure.type, 'NotificationUndeliverable');
    assert.match(failure.message, /^the receiver refused the notification with 404 \(a text reply of \d+ bytes\)$/);
  });

  it('503 and 429 are retried (429 after its Retry-After); on the last attempt the activity gives up', async () => {
    receiver.failNext(secretPath, 1, 503, 'busy');
    const busy = await failureOf(send({ TEST_HOOK_URL: `${receiver.origin}${secretPath}` }));
    assert.equal(busy.nonRetryable, false);
    assert.equal(busy.message, 'the receiver answered 503: busy');
    receiver.failNext(secretPath, 1, 429, 'slow down', { 'retry-after': '2' });
    const limited = await failureOf(send({ TEST_HOOK_URL: `${receiver.origin}${secretPath}` }));
    assert.equal(limited.nonRetryable, false);
    assert.equal(limited.nextRetryDelay, 2000, 'the next attempt waits as the receiver asked');
    receiver.failNext(secretPath, 1, 503, 'busy');
    const last = await failureOf(
      send({ TEST_HOOK_URL: `${receiver.origin}${secretPath}` }, { attempt: 6, maximumAttempts: 6 }),
    );
    assert.equal(last.nonRetryable, true);
    assert.equal(last.message, 'the receiver answered 503: busy (attempt 6 of 6)');
  });

  it('a receiver that is down: retried, naming the error code, never the address', async () => {
    const url = `${await closedOrigin()}${secretPath}`;
    const failure = await failureOf(send({ TEST_HOOK_URL: url }));
    assert.equal(failure.nonRetryable, false);
    assert.equal(failure.message, 'the receiver was not reached (ECONNREFUSED)');
  });

  it('a variable unset, or holding no http(s) URL, is given up at once, naming the variable only', async () => {
    const unset = await failureOf(send({}));
    assert.equal(unset.nonRetryable, true);
    assert.match(unset.message, /^TEST_HOOK_URL is not set in the worker's environment/);
    const notUrl = await failureOf(send({ TEST_HOOK_URL: 'hooks s3cretpath0123' }));
    assert.equal(notUrl.message, "TEST_HOOK_URL does not hold a URL: set it to the webhook's URL (https://...)");
    const file = await failureOf(send({ TEST_HOOK_URL: 'file:///etc/s3cretpath0123' }));
    assert.equal(file.message, "TEST_HOOK_URL holds a file: URL: a webhook's URL is https:// (or http://)");
  });

  it('redaction removes the URL, its path, its path segments and its query values', () => {
    const url = new URL('https://hooks.example.org/services/T0000/B0000/s3cretpath0123?token=abcdef123');
    assert.equal(
      redacted(`no ${url.href} /services/T0000/B0000/s3cretpath0123 s3cretpath0123 abcdef123\nsecond line`, url),
      'no [redacted] [redacted] [redacted] [redacted]',
    );
  });
});
