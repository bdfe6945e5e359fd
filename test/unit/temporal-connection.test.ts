// Where keel connects to Temporal, from a spec's `temporal` section, the env and flags (src/client/connection.ts):
// the precedence field by field, the TLS files read, the API key taken from the env var the spec names, and errors
// that name the field to fix.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connectionOptions, temporalTarget, TemporalConfigError } from '../../src/client/connection.js';
import { formatProblems, resolveSpecInput, type Spec } from '../../src/spec/index.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'keel-temporal-connection-'));
  await writeFile(join(dir, 'client.pem'), 'CLIENT CERT');
  await writeFile(join(dir, 'client.key'), 'CLIENT KEY');
  await writeFile(join(dir, 'ca.pem'), 'SERVER CA');
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function specWith(temporal: unknown): Spec {
  const r = resolveSpecInput({ preset: 'tiny-local', overrides: { temporal } });
  if (!r.ok) throw new Error(formatProblems(r.problems));
  return r.spec;
}

describe('spec.temporal', () => {
  it('is optional: a spec without it resolves to no section, and keel then uses the local dev server', () => {
    const r = resolveSpecInput({ preset: 'tiny-local' });
    assert.ok(r.ok);
    assert.equal(r.spec.temporal, undefined);
    const target = temporalTarget({}, {}, r.spec.temporal);
    assert.deepEqual([target.address, target.namespace, target.taskQueue], ['127.0.0.1:7233', 'default', 'keel']);
    assert.equal(target.tls, undefined);
  });

  it('refuses a client certificate without its key, naming the missing field', () => {
    const r = resolveSpecInput({ preset: 'tiny-local', overrides: { temporal: { tls: { certFile: 'c.pem' } } } });
    assert.equal(r.ok, false);
    assert.match(formatProblems(r.ok ? [] : r.problems), /temporal\.tls\.keyFile: a client certificate needs its key/);
  });

  it('precedence, field by field: flag > env > spec > default, each field remembering its origin', () => {
    const spec = specWith({ address: 'prod.example:7233', namespace: 'rl-prod', taskQueue: 'keel-prod' });
    const fromSpec = temporalTarget({}, {}, spec.temporal);
    assert.deepEqual(
      [fromSpec.address, fromSpec.namespace, fromSpec.taskQueue],
      ['prod.example:7233', 'rl-prod', 'keel-prod'],
    );
    assert.equal(fromSpec.origins?.namespace, 'temporal.namespace');
    const env = { KEEL_TEMPORAL_NAMESPACE: 'rl-staging', KEEL_TEMPORAL_ADDRESS: '' };
    const mixed = temporalTarget({ taskQueue: 'keel-canary' }, env, spec.temporal);
    assert.equal(mixed.address, 'prod.example:7233', 'an empty env var does not override');
    assert.equal(mixed.namespace, 'rl-staging');
    assert.equal(mixed.origins?.namespace, 'KEEL_TEMPORAL_NAMESPACE');
    assert.equal(mixed.taskQueue, 'keel-canary');
    assert.equal(mixed.origins?.taskQueue, '--task-queue');
  });
});

describe('connection options', () => {
  it('reads the TLS files of the spec and sets the server name', async () => {
    const spec = specWith({
      address: 'temporal.internal:7233',
      tls: {
        certFile: join(dir, 'client.pem'),
        keyFile: join(dir, 'client.key'),
        caFile: join(dir, 'ca.pem'),
        serverName: 'frontend.temporal.internal',
      },
    });
    // the address comes from the spec: the client certificate goes there once the user confirms it
    const trust = { KEEL_TEMPORAL_TRUST_ADDRESS: 'temporal.internal:7233' };
    const options = await connectionOptions(temporalTarget({}, trust, spec.temporal), trust);
    assert.equal(options.address, 'temporal.internal:7233');
    assert.ok(options.tls && typeof options.tls === 'object');
    assert.equal(options.tls.clientCertPair?.crt.toString(), 'CLIENT CERT');
    assert.equal(options.tls.clientCertPair?.key.toString(), 'CLIENT KEY');
    assert.equal(options.tls.serverRootCACertificate?.toString(), 'SERVER CA');
    assert.equal(options.tls.serverNameOverride, 'frontend.temporal.internal');
    assert.equal(options.apiKey, undefined);
  });

  it('tls: {} is TLS with the system CA certificates and no client certificate', async () => {
    const options = await connectionOptions(temporalTarget({}, {}, specWith({ tls: {} }).temporal), {});
    assert.deepEqual(options.tls, {});
  });

  it('TLS from the env replaces the spec TLS whole', async () => {
    const spec = specWith({ tls: { caFile: join(dir, 'missing-ca.pem') } });
    const env = { KEEL_TEMPORAL_TLS_CA: join(dir, 'ca.pem') };
    const target = temporalTarget({}, env, spec.temporal);
    assert.equal(target.origins?.tls, 'KEEL_TEMPORAL_TLS_*');
    const options = await connectionOptions(target, env);
    assert.ok(options.tls && typeof options.tls === 'object');
    assert.equal(options.tls.serverRootCACertificate?.toString(), 'SERVER CA');
  });

  it('an unreadable TLS file is an error naming the field and the path', async () => {
    const missing = join(dir, 'nope.pem');
    const spec = specWith({ tls: { certFile: missing, keyFile: join(dir, 'client.key') } });
    await assert.rejects(
      connectionOptions(temporalTarget({}, {}, spec.temporal), {}),
      (error: Error) =>
        error instanceof TemporalConfigError &&
        error.message.startsWith(`temporal.tls.certFile: cannot read ${missing} (ENOENT)`),
    );
    const env = { KEEL_TEMPORAL_TLS_CERT: join(dir, 'client.pem') };
    await assert.rejects(connectionOptions(temporalTarget({}, env), env), /KEEL_TEMPORAL_TLS_KEY is missing/);
  });

  it('takes the API key from the env var the spec names, and turns TLS on', async () => {
    const spec = specWith({ address: 'rl-prod.a1b2c.tmprl.cloud:7233', apiKeyEnv: 'TEMPORAL_CLOUD_API_KEY' });
    assert.ok(!JSON.stringify(spec).includes('secret-key-value'));
    const env = {
      TEMPORAL_CLOUD_API_KEY: 'secret-key-value',
      KEEL_TEMPORAL_TRUST_ADDRESS: 'rl-prod.a1b2c.tmprl.cloud:7233',
    };
    const options = await connectionOptions(temporalTarget({}, env, spec.temporal), env);
    assert.equal(options.apiKey, 'secret-key-value');
    assert.deepEqual(options.tls, {});
  });

  it('an unset API key variable is an error naming the field that names it', async () => {
    const spec = specWith({ apiKeyEnv: 'TEMPORAL_CLOUD_API_KEY' });
    await assert.rejects(
      connectionOptions(temporalTarget({}, {}, spec.temporal), { TEMPORAL_CLOUD_API_KEY: '' }),
      (error: Error) =>
        error instanceof TemporalConfigError &&
        /^temporal\.apiKeyEnv names the env var TEMPORAL_CLOUD_API_KEY, which is not set/.test(error.message),
    );
    const env = { KEEL_TEMPORAL_API_KEY_ENV: 'OTHER_API_KEY' };
    await assert.rejects(
      connectionOptions(temporalTarget({}, env, spec.temporal), env),
      /^TemporalConfigError: KEEL_TEMPORAL_API_KEY_ENV names the env var OTHER_API_KEY/,
    );
  });
});
