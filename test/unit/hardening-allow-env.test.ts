// Hardening round 2, row 8: a spec names worker variables; the worker decides which it may read. By default a field
// names only variables of its own kind; `keel worker --allow-env NAME` (or KEEL_ALLOW_ENV) allows others. A spec that
// points hfEndpointEnv at the Slack webhook, hfTokenEnv at a GitHub token or secretEnv at the AWS key is refused with
// the field and the fix, before the value is read -- asserted on a listener (sent nothing) and the file system.
import assert from 'node:assert/strict';
import { access, mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { execa } from 'execa';
import { allowedEnvNames, envNameRefusal } from '../../activities/env-allowlist.js';
import { placeJobSecrets } from '../../activities/job-secrets.js';
import { notifyActivities } from '../../activities/notify.js';
import { stepActivities } from '../../activities/steps.js';
import { resolveSpecOrThrow } from '../../src/spec/index.js';

const repoRoot = new URL('../..', import.meta.url).pathname;

describe('row 8: the worker decides which of its variables a spec may name', () => {
  let dir: string;
  let server: http.Server;
  let origin: string;
  const requests: { url?: string; authorization?: string }[] = [];
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'keel-hardening-allow-env-'));
    server = http.createServer((req, res) => {
      requests.push({ url: req.url, authorization: req.headers.authorization });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const spec = (overrides: Record<string, unknown>) =>
    resolveSpecOrThrow({ preset: 'tiny-local', overrides: { storage: { baseDir: join(dir, 'base') }, ...overrides } });
  const refusedWith = (pattern: RegExp) => (error: unknown) => {
    assert.ok(error instanceof ApplicationFailure, String(error));
    assert.match(error.message, pattern);
    assert.equal(error.nonRetryable, true);
    return true;
  };

  it('hfEndpointEnv: SLACK_WEBHOOK_URL is refused; the hub token never reaches the Slack URL', async () => {
    const env = {
      SLACK_WEBHOOK_URL: `${origin}/services/T0/B0/secret`,
      HF_TOKEN: 'hf_abcdefghijklmnopqrstuvwxyz0123456789',
    };
    const activities = stepActivities({ cwd: dir, env });
    await assert.rejects(
      activities.checkStep({
        spec: spec({ model: { hfEndpointEnv: 'SLACK_WEBHOOK_URL', hfTokenEnv: 'HF_TOKEN' } }),
        stepId: 'download',
      }),
      refusedWith(
        /^model\.hfEndpointEnv names SLACK_WEBHOOK_URL, which this worker does not let a spec read: .*--allow-env SLACK_WEBHOOK_URL/,
      ),
    );
    assert.equal(requests.length, 0, 'the listener was sent nothing');
  });

  it('hfTokenEnv: GITHUB_TOKEN is refused before any request', async () => {
    const env = { KEEL_HF_ENDPOINT: origin, GITHUB_TOKEN: 'ghp_0123456789abcdefghijABCDEFGHIJklmnopqr' };
    const activities = stepActivities({ cwd: dir, env });
    await assert.rejects(
      activities.checkStep({ spec: spec({ model: { hfTokenEnv: 'GITHUB_TOKEN' } }), stepId: 'download' }),
      refusedWith(/^model\.hfTokenEnv names GITHUB_TOKEN/),
    );
    assert.equal(requests.length, 0);
  });

  it('secretEnv: [AWS_SECRET_ACCESS_KEY] is refused; no secret file is written', async () => {
    const s = spec({ rayHead: { secretEnv: ['AWS_SECRET_ACCESS_KEY'] } });
    const file = join(dir, 'job-secrets', 'job.env');
    await assert.rejects(
      placeJobSecrets(s, s.cluster.nodes[0]!, file, {
        AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
      }),
      refusedWith(/^rayHead\.secretEnv names AWS_SECRET_ACCESS_KEY, which this worker does not let a spec read/),
    );
    await assert.rejects(access(file), /ENOENT/);
  });

  it('a webhook urlEnv that is not a webhook URL variable is given up at once, nothing posted', async () => {
    const env = { GITHUB_HOOK_TOKEN: `${origin}/hook` };
    const send = (allowEnv?: string[]) =>
      new MockActivityEnvironment({ attempt: 1, retryPolicy: { maximumAttempts: 3 } }).run(
        notifyActivities({ cwd: '/', env, allowEnv }).sendNotification,
        {
          webhook: { format: 'json' as const, urlEnv: 'GITHUB_HOOK_TOKEN' },
          event: {
            id: 'e1',
            kind: 'paused' as const,
            run: 'r',
            workflowId: 'w',
            at: '2026-01-01T00:00:00Z',
            text: 't',
            fields: {},
          },
        },
      );
    await assert.rejects(send(), refusedWith(/notify\.webhooks\[\]\.urlEnv names GITHUB_HOOK_TOKEN/));
    assert.equal(requests.length, 0);
    // the operator allows it: the post goes out
    await send(['GITHUB_HOOK_TOKEN']);
    assert.equal(requests.length, 1);
    assert.equal(requests[0]!.url, '/hook');
  });

  it('defaults, --allow-env and KEEL_ALLOW_ENV', () => {
    assert.equal(envNameRefusal('model.hfTokenEnv', 'HF_TOKEN'), undefined);
    assert.equal(envNameRefusal('rayHead.secretEnv', 'WANDB_API_KEY'), undefined);
    assert.equal(envNameRefusal('notify.webhooks[].urlEnv', 'SLACK_WEBHOOK_URL'), undefined);
    assert.ok(envNameRefusal('rayHead.secretEnv', 'AWS_SECRET_ACCESS_KEY'));
    const allowed = allowedEnvNames(['AWS_SECRET_ACCESS_KEY', 'A,B'], { KEEL_ALLOW_ENV: 'C D' });
    assert.deepEqual(allowed, ['AWS_SECRET_ACCESS_KEY', 'A', 'B', 'C', 'D']);
    assert.equal(envNameRefusal('rayHead.secretEnv', 'AWS_SECRET_ACCESS_KEY', allowed), undefined);
  });

  it('keel worker --help documents --allow-env', async () => {
    const r = await execa('node', ['bin/keel.js', 'worker', '--help'], { cwd: repoRoot });
    assert.match(r.stdout, /--allow-env <names\.\.\.>/);
  });
});
