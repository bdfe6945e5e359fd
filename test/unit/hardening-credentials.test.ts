// Hardening round 2, row 1: a spec file names a server, an env var and a CA; `keel list --spec evil.yaml` must not send
// the user's secret there. A real TLS listener on loopback (a throwaway certificate made with openssl) records every
// connection and byte it is sent: without the user's confirmation of the address it is sent nothing, and keel exits 2
// naming the field and the fix. With the confirmation, the same listener is reached (the test can see a leak).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { execa } from 'execa';

const repoRoot = new URL('../..', import.meta.url).pathname;
const secret = 'wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY';

describe('row 1: no credential goes to a server a spec file chose', { timeout: 120_000 }, () => {
  let dir: string;
  let server: tls.Server;
  let address: string;
  const received = { connections: 0, bytes: Buffer.alloc(0) };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'keel-hardening-credentials-'));
    execFileSync(
      'openssl',
      [
        ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'],
        ...['-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1'],
        ...['-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
      ],
      { stdio: 'ignore' },
    );
    server = tls.createServer(
      { key: await readFile(join(dir, 'key.pem')), cert: await readFile(join(dir, 'cert.pem')), ALPNProtocols: ['h2'] },
      (socket) => {
        received.connections++;
        socket.on('data', (chunk: Buffer) => (received.bytes = Buffer.concat([received.bytes, chunk])));
        socket.on('error', () => undefined);
      },
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    await writeFile(
      join(dir, 'evil.yaml'),
      [
        'preset: tiny-local',
        'overrides:',
        '  temporal:',
        `    address: "${address}"`,
        '    apiKeyEnv: AWS_SECRET_ACCESS_KEY',
        '    tls:',
        `      caFile: ${join(dir, 'cert.pem')}`,
        '',
      ].join('\n'),
    );
  });
  after(async () => {
    server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const keelList = (extraEnv: Record<string, string> = {}) =>
    execa('node', ['bin/keel.js', 'list', '--spec', join(dir, 'evil.yaml')], {
      cwd: repoRoot,
      reject: false,
      timeout: 20_000,
      extendEnv: false,
      env: { PATH: process.env.PATH!, HOME: process.env.HOME!, AWS_SECRET_ACCESS_KEY: secret, ...extraEnv },
    });

  it('keel list --spec evil.yaml exits 2 naming temporal.address and the fix; the listener is sent nothing', async () => {
    const r = await keelList();
    assert.equal(r.exitCode, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`temporal\\.address: ${address} comes from the spec file`));
    assert.match(r.stderr, /the API key in AWS_SECRET_ACCESS_KEY \(temporal\.apiKeyEnv\)/);
    assert.match(r.stderr, new RegExp(`KEEL_TEMPORAL_TRUST_ADDRESS=${address}`));
    assert.ok(!r.stderr.includes(secret) && !r.stdout.includes(secret));
    assert.equal(received.connections, 0, 'no connection reached the listener');
    assert.equal(received.bytes.length, 0);
  });

  it('once the user confirms the address, keel connects there (the listener sees an HTTP/2 client)', async () => {
    const keel = keelList({ KEEL_TEMPORAL_TRUST_ADDRESS: address });
    // the listener is no Temporal server: stop keel once it has been reached
    for (let waited = 0; received.bytes.length < 24 && keel.exitCode === null && waited < 20_000; waited += 100)
      await new Promise((resolve) => setTimeout(resolve, 100));
    keel.kill();
    await keel;
    assert.ok(received.connections > 0, 'the confirmed address was reached');
    assert.ok(received.bytes.subarray(0, 24).toString('latin1').startsWith('PRI * HTTP/2.0'));
  });
});
