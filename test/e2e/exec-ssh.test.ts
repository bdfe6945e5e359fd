// The ssh executor end to end against three real sshd instances on loopback addresses: run, host key checking,
// connection multiplexing, literal arguments (shell metacharacters), launch / re-attach / tail / stop, surviving the
// control side, secrets, and a gang of three with a failing member.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import {
  ExecTimeoutError,
  GangMemberFailedError,
  SshConnectionError,
  SshExecutor,
  gangMemberId,
  runGang,
  type NodeTarget,
  type SshExecutorOptions,
} from '../../src/exec/index.js';
import { sshUnavailableReason, startSshCluster, type SshCluster } from '../support/sshd.js';

const skip = sshUnavailableReason();

describe('ssh executor', { skip }, () => {
  let cluster: SshCluster;
  let dir: string;
  let nodes: NodeTarget[];
  const executors: SshExecutor[] = [];
  const commands: string[][] = [];
  const launchedGroups: number[] = [];

  const newExecutor = (overrides: Partial<SshExecutorOptions> = {}): SshExecutor => {
    const executor = new SshExecutor({
      stateDir: (node) => path.join(dir, 'state', node.name ?? node.host),
      user: cluster.user,
      identityFile: cluster.identityFile,
      knownHostsFile: cluster.knownHostsFile,
      connectTimeoutSec: 5,
      onCommand: ({ argv }) => commands.push(argv),
      ...overrides,
    });
    executors.push(executor);
    return executor;
  };

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'keel-exec-ssh-'));
    cluster = await startSshCluster({ count: 3 });
    nodes = cluster.nodes.map((n, i) => ({ host: n.host, port: n.port, name: `node-${i}` }));
  });

  after(async () => {
    await Promise.all(executors.map((e) => e.close()));
    for (const pgid of launchedGroups) {
      try {
        process.kill(-pgid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('runs on each node through its own sshd, multiplexed over one control connection', async () => {
    const executor = newExecutor();
    for (const node of nodes) {
      const result = await executor.run(node, ['sh', '-c', 'echo "$SSH_CONNECTION"']);
      assert.equal(result.exitCode, 0, result.stderr);
      const [, , serverAddress, serverPort] = result.stdout.trim().split(' ');
      assert.deepEqual([serverAddress, Number(serverPort)], [node.host, node.port]);
    }
    const last = commands.at(-1)!;
    const controlPath = last.find((arg) => arg.startsWith('ControlPath='))!;
    for (const node of nodes) {
      const check = await execa(
        'ssh',
        ['-o', controlPath, '-O', 'check', '-p', String(node.port), '-l', cluster.user, '--', node.host],
        { reject: false },
      );
      assert.equal(check.exitCode, 0, `no control master for ${node.host}: ${check.stderr}`);
    }
    assert.ok(last.includes('BatchMode=yes') && last.includes('StrictHostKeyChecking=yes'));
    await executor.close();
    assert.equal(existsSync(path.dirname(controlPath.slice('ControlPath='.length))), false, 'control dir removed');
  });

  test('a run timeout ends the remote program too', async () => {
    const executor = newExecutor();
    await assert.rejects(executor.run(nodes[0]!, ['sleep', '31.77'], { timeoutMs: 500 }), ExecTimeoutError);
    await waitFor(async () => !processArgvs().some((argv) => argv === 'sleep\u000031.77\u0000'));
  });

  test('checks host keys by default: an unknown or changed key refuses the connection', async () => {
    const empty = path.join(dir, 'known_hosts.empty');
    await writeFile(empty, '');
    await assert.rejects(newExecutor({ knownHostsFile: empty }).run(nodes[0]!, ['true']), SshConnectionError);

    const entries = (await readFile(cluster.knownHostsFile, 'utf8')).trim().split('\n');
    const keyOfNode1 = entries[1]!.split(' ').slice(1).join(' ');
    const swapped = path.join(dir, 'known_hosts.swapped');
    await writeFile(swapped, `${entries[0]!.split(' ')[0]} ${keyOfNode1}\n`);
    await assert.rejects(newExecutor({ knownHostsFile: swapped }).run(nodes[0]!, ['true']), (error: unknown) => {
      assert.ok(error instanceof SshConnectionError);
      assert.match(error.stderr, /host key|HOST IDENTIFICATION/i);
      return true;
    });
  });

  test('shell metacharacters in argv, env and cwd reach the remote program as literal values', async () => {
    const executor = newExecutor();
    const canary = path.join(dir, 'pwned');
    const nasty = [
      `; rm -rf ${canary}-dir; touch ${canary}-semicolon`,
      `$(touch ${canary}-subst)`,
      `\`touch ${canary}-backtick\``,
      `it's "quoted" 'twice'`,
      'line one\nline two\n',
      `&& touch ${canary}-and || true | cat > ${canary}-pipe`,
      '*',
      '~',
      '$HOME ${PATH} $1 "$@"',
      "!bang '!' \\backslash\\",
      '',
      ' leading and trailing spaces ',
      '--not-an-option',
      'ünïcödé ✓ 日本',
      '\t tab',
    ];
    const echoArgv = [process.execPath, '-e', 'process.stdout.write(JSON.stringify(process.argv.slice(1)))', '--'];
    const cwd = path.join(dir, `cwd $(touch ${canary}-cwd) ; 'q"`);
    await mkdir(cwd, { recursive: true });

    const ran = await executor.run(nodes[1]!, [...echoArgv, ...nasty], { cwd, env: { KEEL_NASTY: nasty[0]! } });
    assert.equal(ran.exitCode, 0, ran.stderr);
    assert.deepEqual(JSON.parse(ran.stdout), nasty);

    const envAndCwd = await executor.run(nodes[1]!, ['sh', '-c', 'printf "%s|%s" "$KEEL_NASTY" "$(pwd)"'], {
      cwd,
      env: { KEEL_NASTY: nasty.join('') },
    });
    assert.equal(envAndCwd.stdout, `${nasty.join('')}|${cwd}`);

    await executor.launch(nodes[1]!, { id: 'meta/launch', argv: [...echoArgv, ...nasty], cwd, env: { X: nasty[1]! } });
    await waitFor(async () => (await executor.status(nodes[1]!, 'meta/launch'))?.state === 'exited');
    assert.deepEqual(JSON.parse((await executor.tail(nodes[1]!, 'meta/launch', 0)).text), nasty);
    assert.deepEqual((await executor.status(nodes[1]!, 'meta/launch'))?.argv, [...echoArgv, ...nasty]);

    const written = path.join(dir, `file $(touch ${canary}-write) ;.txt`);
    await executor.writeFile(nodes[1]!, written, nasty.join('\n'));
    assert.equal(await executor.readFile(nodes[1]!, written), nasty.join('\n'));

    const pwned = readdirSync(dir).filter((name) => name.startsWith('pwned'));
    assert.deepEqual(pwned, [], 'no metacharacter was interpreted by a shell');
  });

  test('launch, re-attach after the control side goes away, tail from an offset, stop TERM then KILL', async () => {
    const first = newExecutor();
    const node = nodes[2]!;
    const counter = path.join(dir, 'ssh-starts.txt');
    const program = [
      process.execPath,
      '-e',
      `const fs = require('fs');
       fs.appendFileSync(process.argv[1], 'started\\n');
       process.on('SIGTERM', () => console.log('TERM ignored'));
       let i = 0;
       setInterval(() => console.log('tick ' + i++), 50);`,
      '--',
      counter,
    ];
    const launched = await first.launch(node, { id: 'run-1/train', argv: program });
    launchedGroups.push(launched.record.pgid);
    assert.equal(launched.reattached, false);
    assert.equal(launched.record.node, 'node-2');
    await waitFor(async () => (await first.tail(node, 'run-1/train', 0)).text.includes('tick 3'));
    await first.close(); // ends the ssh control master: the job must not notice

    const second = newExecutor();
    assert.equal((await second.status(node, 'run-1/train'))?.state, 'running');
    const again = await second.launch(node, { id: 'run-1/train', argv: program });
    assert.deepEqual([again.reattached, again.record.pid], [true, launched.record.pid]);
    assert.equal(readFileSync(counter, 'utf8'), 'started\n');

    const head = await second.tail(node, 'run-1/train', 0, 7);
    assert.deepEqual(head, { text: 'tick 0\n', nextOffset: 7 });
    const next = await second.tail(node, 'run-1/train', head.nextOffset, 7);
    assert.deepEqual(next, { text: 'tick 1\n', nextOffset: 14 });

    await second.stop(node, 'run-1/train', { graceMs: 500 });
    const status = await second.status(node, 'run-1/train');
    assert.deepEqual([status?.state, status?.exitCode], ['exited', 128 + os.constants.signals.SIGKILL]);
    assert.match((await second.tail(node, 'run-1/train', 0)).text, /TERM ignored/);
  });

  test('a secret reaches the remote program as env, never in ssh argv, the record, the log or a process argv', async () => {
    const executor = newExecutor();
    const secret = `hf_${Math.random().toString(36).slice(2)}'$(touch nope)"`;
    process.env.KEEL_TEST_SSH_SECRET = secret;
    const node = nodes[0]!;
    const seen = path.join(dir, 'ssh-secret-seen');
    commands.length = 0;
    try {
      const { record } = await executor.launch(node, {
        id: 'run-1/download',
        argv: ['sh', '-c', 'printf %s "$HF_TOKEN" > "$1"; echo "token bytes: ${#HF_TOKEN}"; exec sleep 60', 'sh', seen],
        secretEnv: { HF_TOKEN: 'KEEL_TEST_SSH_SECRET' },
      });
      launchedGroups.push(record.pgid);
      await waitFor(async () => existsSync(seen) && readFileSync(seen, 'utf8') === secret);
      assert.ok(commands.length > 0);
      assert.ok(!JSON.stringify(commands).includes(secret), 'secret in an ssh command line');
      const recordDir = path.join(dir, 'state', 'node-0', 'procs', 'run-1', 'download');
      assert.ok(!readFileSync(path.join(recordDir, 'record.json'), 'utf8').includes(secret));
      assert.equal(existsSync(path.join(recordDir, 'secret.env')), false);
      const log = (await executor.tail(node, 'run-1/download', 0)).text;
      assert.match(log, new RegExp(`token bytes: ${secret.length}`));
      assert.ok(!log.includes(secret));
      assert.ok(processArgvs().length > 0);
      assert.ok(!processArgvs().some((argv) => argv.includes(secret)), 'a process has the secret in its argv');
      await executor.stop(node, 'run-1/download', { graceMs: 1000 });
    } finally {
      delete process.env.KEEL_TEST_SSH_SECRET;
    }
  });

  test('a gang of three over ssh: one rank per node; a failing rank stops the others', async () => {
    const executor = newExecutor();
    const envDir = path.join(dir, 'gang-env');
    const memberArgv = (body: string): string[] => [
      'sh',
      '-c',
      `mkdir -p "$1"; echo "$NODE_RANK/$NNODES $MASTER_ADDR:$MASTER_PORT via $SSH_CONNECTION" > "$1/$NODE_RANK"; ${body}`,
      'sh',
      envDir,
    ];
    const ok = await runGang({
      executor,
      id: 'run-1/convert',
      members: nodes.map((node) => ({ node, argv: memberArgv('sleep 0.2') })),
      masterAddr: nodes[0]!.host,
      masterPort: 29500,
      pollMs: 100,
    });
    assert.equal(ok.records.length, 3);
    for (const [rank, node] of nodes.entries()) {
      const line = readFileSync(path.join(envDir, String(rank)), 'utf8').trim();
      assert.match(line, new RegExp(`^${rank}/3 ${nodes[0]!.host}:29500 via \\S+ \\d+ ${node.host} ${node.port}$`));
    }

    const failure = await runGang({
      executor,
      id: 'run-2/convert',
      members: nodes.map((node, rank) => ({
        node,
        argv: memberArgv(rank === 1 ? 'sleep 0.3; echo "CUDA error: out of memory" >&2; exit 3' : 'exec sleep 60'),
      })),
      masterAddr: nodes[0]!.host,
      masterPort: 29501,
      pollMs: 100,
      graceMs: 2000,
    }).then(
      () => assert.fail('gang should fail'),
      (e: unknown) => e,
    );
    assert.ok(failure instanceof GangMemberFailedError, String(failure));
    assert.deepEqual([failure.rank, failure.node, failure.exitCode], [1, 'node-1', 3]);
    assert.match(failure.logTail, /CUDA error: out of memory/);
    for (const rank of [0, 2]) {
      const status = await executor.status(nodes[rank]!, gangMemberId('run-2/convert', rank));
      assert.deepEqual([status?.state, status?.exitCode], ['exited', 128 + os.constants.signals.SIGTERM]);
    }
  });
});

async function waitFor(predicate: () => Promise<boolean>, limitMs = 20_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) assert.fail('condition not reached');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The raw argv (NUL-separated) of every process on this machine. */
function processArgvs(): string[] {
  const argvs: string[] = [];
  for (const entry of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      argvs.push(readFileSync(`/proc/${entry}/cmdline`, 'utf8'));
    } catch {
      // ended meanwhile
    }
  }
  return argvs;
}
