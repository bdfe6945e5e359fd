// Row 3 (and the endpoint of row 2): a program keel launches gets an explicit environment -- a login's variables, the
// step's own variables and the secrets it names -- never the control worker's. Read from /proc/PID/environ of the
// launched program itself, through the local executor and through ssh (a real sshd on loopback).
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { stepActivities } from '../../activities/steps.js';
import { LocalExecutor, SshExecutor, type Executor, type NodeTarget } from '../../src/exec/index.js';
import { loginVariables } from '../../src/exec/node-environment.js';
import { resolveSpecOrThrow } from '../../src/spec/index.js';
import { sshUnavailableReason, startSshCluster, type SshCluster } from '../support/sshd.js';

const canary = 'KEEL_TEST_WORKER_CANARY';
const secretSource = 'KEEL_TEST_SECRET_SOURCE';
const secretValue = `s3cret-${process.pid}-value`;
/** Variables a shell or sshd adds by itself (never values of the worker). */
const addedByShellOrSshd =
  /^(PWD|OLDPWD|SHLVL|_|MAIL|MOTD_SHOWN|SSH_CLIENT|SSH_CONNECTION|SSH_TTY|XDG_[A-Z_]+|LC_[A-Z]+)$/;

let dir: string;
const groups: number[] = [];
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'keel-hardening-env-'));
  process.env[canary] = 'worker-only-value';
  process.env[secretSource] = secretValue;
});
after(async () => {
  for (const pgid of groups) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  delete process.env[canary];
  delete process.env[secretSource];
  await rm(dir, { recursive: true, force: true });
});

async function environOf(pid: number): Promise<Map<string, string>> {
  const text = await readFile(`/proc/${pid}/environ`, 'utf8');
  const entries = text
    .split('\0')
    .filter(Boolean)
    .map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)] as [string, string]);
  return new Map(entries);
}

/** The launched program: the wrapper's (the record's pid) only child. */
async function programPid(wrapperPid: number): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const children = (await readFile(`/proc/${wrapperPid}/task/${wrapperPid}/children`, 'utf8')).trim();
    if (children) return Number(children.split(' ')[0]);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`the wrapper ${wrapperPid} started no program`);
}

async function launchAndReadEnviron(executor: Executor, node: NodeTarget, id: string): Promise<Map<string, string>> {
  const { record } = await executor.launch(node, {
    id,
    argv: ['sleep', '60'],
    env: { STEP_VARIABLE: 'step value' },
    secretEnv: { MY_SECRET: secretSource },
  });
  groups.push(record.pgid);
  try {
    return await environOf(await programPid(record.pid));
  } finally {
    await executor.stop(node, id, { graceMs: 500 });
  }
}

function assertOnlyStepAndLogin(environ: Map<string, string>, nodeLogin: ReadonlySet<string> = new Set()): void {
  assert.equal(environ.get('STEP_VARIABLE'), 'step value');
  assert.equal(environ.get('MY_SECRET'), secretValue, 'the named secret reaches the program');
  assert.equal(environ.has(canary), false, 'no worker variable reaches the program');
  assert.equal(environ.has(secretSource), false, 'the raw secret under its original name does not either');
  const allowed = new Set<string>([...loginVariables, 'STEP_VARIABLE', 'MY_SECRET']);
  const unexpected = [...environ.keys()].filter(
    (name) => !allowed.has(name) && !nodeLogin.has(name) && !addedByShellOrSshd.test(name),
  );
  assert.deepEqual(unexpected, [], `unexpected variables: ${unexpected.join(', ')}`);
  const workerValues = new Set(
    Object.entries(process.env)
      .filter(
        ([name]) => !loginVariables.includes(name as never) && !nodeLogin.has(name) && !addedByShellOrSshd.test(name),
      )
      .map(([, value]) => value)
      .filter((value): value is string => value !== undefined && value.length > 8),
  );
  for (const [name, value] of environ)
    if (name !== 'MY_SECRET' && !addedByShellOrSshd.test(name))
      assert.equal(workerValues.has(value), false, `${name} holds a worker value`);
}

describe('launched programs get an explicit environment', () => {
  it('local executor: /proc/PID/environ holds the step variables, the named secret and a login environment only', async () => {
    const executor = new LocalExecutor({ stateDir: path.join(dir, 'local-state') });
    const environ = await launchAndReadEnviron(executor, { host: 'localhost', name: 'local-0' }, 'env/local');
    assertOnlyStepAndLogin(environ);
    assert.equal(environ.get('PATH'), process.env.PATH, 'PATH is the login PATH of this account');
  });

  it('local executor: run() (probes, ray start) gets the same explicit environment', async () => {
    const executor = new LocalExecutor({ stateDir: path.join(dir, 'local-state') });
    const result = await executor.run({ host: 'localhost' }, ['env'], { env: { STEP_VARIABLE: 'x' } });
    const names = result.stdout
      .split('\n')
      .filter(Boolean)
      .map((line) => line.slice(0, line.indexOf('=')));
    assert.ok(names.includes('STEP_VARIABLE'));
    assert.ok(!names.includes(canary) && !names.includes(secretSource), names.join(' '));
  });

  describe('ssh executor', { skip: sshUnavailableReason() }, () => {
    let cluster: SshCluster;
    let executor: SshExecutor;
    before(async () => {
      cluster = await startSshCluster({ count: 1 });
      executor = new SshExecutor({
        stateDir: path.join(dir, 'ssh-state'),
        user: cluster.user,
        identityFile: cluster.identityFile,
        knownHostsFile: cluster.knownHostsFile,
        connectTimeoutSec: 5,
      });
    });
    after(async () => {
      await executor?.close();
      await cluster?.stop();
    });
    it('/proc/PID/environ over ssh: step variables, the named secret and sshd login variables only', async () => {
      const node = { host: cluster.nodes[0]!.host, port: cluster.nodes[0]!.port, name: 'ssh-0' };
      // What a login on the node has by itself (sshd, PAM, /etc/environment): the node's variables, not the worker's.
      const login = await executor.run(node, ['env']);
      const nodeLogin = new Set(
        login.stdout
          .split('\n')
          .filter(Boolean)
          .map((line) => line.slice(0, line.indexOf('='))),
      );
      assert.equal(nodeLogin.has(canary), false, 'ssh itself does not forward the worker canary');
      const environ = await launchAndReadEnviron(executor, node, 'env/ssh');
      assertOnlyStepAndLogin(environ, nodeLogin);
    });
  });
});

describe('row 2: the Hub endpoint named by the spec', () => {
  const spec = (overrides: Record<string, unknown>) => resolveSpecOrThrow({ preset: 'tiny-local', overrides });

  it('a variable holding something that is not a URL: the error names the variable, never the value', async () => {
    const secret = 'sk-live-0123456789abcdefghijABCDEFGHIJ';
    // (the operator allowed the variable: the worker's allowlist is tested in hardening-allow-env.test.ts)
    const activities = stepActivities({
      cwd: dir,
      env: { SECRET_HOLDING_URL: secret },
      allowEnv: ['SECRET_HOLDING_URL'],
    });
    const s = spec({ model: { hfEndpointEnv: 'SECRET_HOLDING_URL' } });
    await assert.rejects(activities.checkStep({ spec: s, stepId: 'download' }), (error: Error) => {
      assert.match(error.message, /model\.hfEndpointEnv names SECRET_HOLDING_URL, whose value is not a URL/);
      assert.ok(!error.message.includes(secret), 'the value is not in the message');
      assert.ok(!(error.stack ?? '').includes(secret), 'nor in the stack');
      return true;
    });
  });
  it('an endpoint with credentials in it is refused the same way', async () => {
    const activities = stepActivities({
      cwd: dir,
      env: { HUB_URL: 'https://user:hunter2@hub.example' },
      allowEnv: ['HUB_URL'],
    });
    await assert.rejects(
      activities.checkStep({ spec: spec({ model: { hfEndpointEnv: 'HUB_URL' } }), stepId: 'download' }),
      (error: Error) => /carries credentials/.test(error.message) && !error.message.includes('hunter2'),
    );
  });

  it('hf download gets the token and the endpoint as secrets: in its environment, in no argv and no record', async () => {
    const bin = path.join(dir, 'hf-bin');
    await mkdir(bin, { recursive: true });
    const seen = path.join(dir, 'hf-seen');
    await writeFile(
      path.join(bin, 'hf'),
      `#!/bin/sh\ncat /proc/$$/environ > ${seen}.environ\nprintf '%s\\n' "$@" > ${seen}.argv\n`,
    );
    await chmod(path.join(bin, 'hf'), 0o755);
    const endpoint = 'http://127.0.0.1:9/hub-endpoint-value';
    const token = 'hf_abcdefghijklmnopqrstuvwxyz0123456789';
    const stateDir = path.join(dir, 'download-state');
    const s = spec({
      storage: { baseDir: path.join(dir, 'base') },
      cluster: { env: { PATH: `${bin}:/usr/bin:/bin` }, stateDir },
    });
    // The worker's environment (secrets are read from it by name when a program is launched).
    process.env.HF_TOKEN = token;
    process.env.KEEL_HF_ENDPOINT = endpoint;
    const activities = stepActivities({ cwd: dir, env: process.env });
    try {
      await new MockActivityEnvironment().run(activities.downloadModel, {
        spec: s,
        stepId: 'download',
        runKey: 'env-test',
        attempt: 1,
      });
    } finally {
      delete process.env.HF_TOKEN;
      delete process.env.KEEL_HF_ENDPOINT;
    }
    const environ = new Map(
      (await readFile(`${seen}.environ`, 'utf8'))
        .split('\0')
        .filter(Boolean)
        .map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]),
    );
    assert.equal(environ.get('HF_TOKEN'), token);
    assert.equal(environ.get('HF_ENDPOINT'), endpoint);
    assert.equal(environ.has(canary), false);
    assert.ok(!(await readFile(`${seen}.argv`, 'utf8')).includes(endpoint));
    // Nothing under the node's process records (record.json, the log) holds either value.
    for (const entry of await readdir(stateDir, { recursive: true, withFileTypes: true })) {
      if (!entry.isFile()) continue;
      const text = await readFile(path.join(entry.parentPath, entry.name), 'utf8');
      assert.ok(!text.includes(endpoint) && !text.includes(token), `${entry.name} holds a secret`);
    }
  });
});
