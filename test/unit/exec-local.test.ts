// The local executor against real processes: run, detached launch with a process record, re-attach, tail from an
// offset, read any file by byte range, exit codes, stopping a process group (TERM, then KILL), lost detection,
// secrets, and surviving the launcher.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  ExecTimeoutError,
  InvalidLaunchSpecError,
  LocalExecutor,
  MissingSecretError,
  UnknownProcessError,
  type ProcessStatus,
} from '../../src/exec/index.js';
import { completeUtf8Prefix } from '../../src/exec/script-executor.js';

const node = { host: 'localhost', name: 'local-0' };
let dir: string;
let executor: LocalExecutor;
const launchedGroups: number[] = [];

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'keel-exec-local-'));
  executor = new LocalExecutor({ stateDir: path.join(dir, 'state') });
});

after(async () => {
  for (const pgid of launchedGroups) killGroup(pgid);
  await rm(dir, { recursive: true, force: true });
});

function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** A live, non-zombie process (a zombie waits for its new parent to reap it, which can lag). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(') ') + 2, stat.lastIndexOf(') ') + 3) !== 'Z';
  } catch {
    return false;
  }
}

async function launch(id: string, argv: string[], extra: { env?: Record<string, string>; cwd?: string } = {}) {
  const result = await executor.launch(node, { id, argv, ...extra });
  launchedGroups.push(result.record.pgid);
  return result;
}

async function waitForState(id: string, state: ProcessStatus['state'], limitMs = 20_000): Promise<ProcessStatus> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const status = await executor.status(node, id);
    if (status?.state === state) return status;
    if (Date.now() > deadline) assert.fail(`${id} did not reach ${state}: ${JSON.stringify(status)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function waitForFile(file: string, text: string, limitMs = 20_000): Promise<string> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const content = await readFile(file, 'utf8').catch(() => '');
    if (content.includes(text)) return content;
    if (Date.now() > deadline)
      assert.fail(`${file} never contained ${JSON.stringify(text)}: ${JSON.stringify(content)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('run', () => {
  test('passes argv, env, cwd and stdin literally and reports the exit code', async () => {
    const result = await executor.run(
      node,
      ['sh', '-c', 'printf "%s|%s|%s|" "$1" "$KEEL_X" "$(pwd)"; cat; exit 7', 'sh', "a 'b' $(c)"],
      { env: { KEEL_X: 'x "y" $z' }, cwd: dir, input: 'from stdin' },
    );
    assert.deepEqual(result, { exitCode: 7, stdout: `a 'b' $(c)|x "y" $z|${dir}|from stdin`, stderr: '' });
  });

  test('throws a typed error on timeout', async () => {
    await assert.rejects(executor.run(node, ['sleep', '30'], { timeoutMs: 300 }), ExecTimeoutError);
  });

  test('readFile and writeFile round-trip, creating parent directories', async () => {
    const file = path.join(dir, 'files', 'deep', 'a.txt');
    assert.equal(await executor.readFile(node, file), undefined);
    await executor.writeFile(node, file, 'line 1\nünïcode\n');
    assert.equal(await executor.readFile(node, file), 'line 1\nünïcode\n');
    assert.equal(await readFile(file, 'utf8'), 'line 1\nünïcode\n');
  });
});

describe('launch', () => {
  test('writes a record, runs detached in its own process group, and records the exit code', async () => {
    const { record, reattached } = await launch('t/exit-code', ['sh', '-c', 'echo "hello $KEEL_Y"; exit 3'], {
      env: { KEEL_Y: 'world' },
    });
    assert.equal(reattached, false);
    assert.equal(record.pgid, record.pid);
    assert.equal(record.node, 'local-0');
    assert.deepEqual(record.argv, ['sh', '-c', 'echo "hello $KEEL_Y"; exit 3']);
    assert.equal(record.logFile, path.join(dir, 'state', 'procs', 't', 'exit-code', 'output.log'));
    const status = await waitForState('t/exit-code', 'exited');
    assert.equal(status.exitCode, 3);
    assert.equal((await executor.tail(node, 't/exit-code', 0)).text, 'hello world\n');
    const onDisk = JSON.parse(
      await readFile(path.join(dir, 'state', 'procs', 't', 'exit-code', 'record.json'), 'utf8'),
    );
    assert.deepEqual(onDisk, record);
  });

  test('a live id re-attaches instead of starting a second copy, also under concurrent launches', async () => {
    const counter = path.join(dir, 'starts.txt');
    const argv = ['sh', '-c', 'echo started >> "$1"; exec sleep 30', 'sh', counter];
    const results = await Promise.all([1, 2, 3].map(() => launch('t/reattach', argv)));
    assert.equal(results.filter((r) => !r.reattached).length, 1);
    assert.equal(new Set(results.map((r) => r.record.pid)).size, 1);
    const again = await launch('t/reattach', argv);
    assert.equal(again.reattached, true);
    await waitFor(async () => (await readFile(counter, 'utf8')) === 'started\n');
    assert.equal((await executor.status(node, 't/reattach'))?.state, 'running');

    await executor.stop(node, 't/reattach', { graceMs: 2000 });
    const relaunched = await launch('t/reattach', argv);
    assert.equal(relaunched.reattached, false, 'a stopped id launches again');
    assert.notEqual(relaunched.record.pid, again.record.pid);
    await waitForFile(counter, 'started\nstarted\n');
    await executor.stop(node, 't/reattach', { graceMs: 2000 });
  });

  test('tails the log from a byte offset without splitting UTF-8 characters', async () => {
    const id = 't/tail';
    await launch(id, ['sh', '-c', 'printf "first\\n"; sleep 0.3; printf "zweite Zeile: grüße\\n"']);
    await waitForState(id, 'exited');
    const first = await executor.tail(node, id, 0, 6);
    assert.deepEqual(first, { text: 'first\n', nextOffset: 6 });
    // "grüße": ü is 2 bytes; a window ending inside it stops before it.
    const partial = await executor.tail(node, id, first.nextOffset, 'zweite Zeile: gr'.length + 1);
    assert.deepEqual(partial, { text: 'zweite Zeile: gr', nextOffset: 6 + 16 });
    const rest = await executor.tail(node, id, partial.nextOffset);
    assert.equal(rest.text, 'üße\n');
    assert.deepEqual(await executor.tail(node, id, rest.nextOffset), { text: '', nextOffset: rest.nextOffset });
  });

  test('reads any file by byte range: size, bytes from an offset, UTF-8 kept whole, no file', async () => {
    const file = path.join(dir, 'range.log');
    await writeFile(file, 'first\nzweite Zeile: grüße\n');
    const first = await executor.readFileRange(node, file, 0, 6);
    assert.deepEqual(first, { text: 'first\n', nextOffset: 6, size: 28, bytesRead: 6 });
    const partial = await executor.readFileRange(node, file, 6, 'zweite Zeile: gr'.length + 1);
    assert.deepEqual(partial, { text: 'zweite Zeile: gr', nextOffset: 22, size: 28, bytesRead: 17 });
    assert.deepEqual(await executor.readFileRange(node, file, 22), {
      text: 'üße\n',
      nextOffset: 28,
      size: 28,
      bytesRead: 6,
    });
    assert.deepEqual(await executor.readFileRange(node, file, 28), {
      text: '',
      nextOffset: 28,
      size: 28,
      bytesRead: 0,
    });
    assert.equal(await executor.readFileRange(node, path.join(dir, 'no-such.log'), 0), undefined);
    await assert.rejects(executor.readFileRange(node, 'relative.log', 0), InvalidLaunchSpecError);
  });

  test('a missing cwd or program is an exit code, not a hang', async () => {
    await launch('t/no-cwd', ['true'], { cwd: path.join(dir, 'does-not-exist') });
    assert.equal((await waitForState('t/no-cwd', 'exited')).exitCode, 126);
    await launch('t/no-program', ['keel-no-such-program-xyz']);
    assert.equal((await waitForState('t/no-program', 'exited')).exitCode, 127);
  });

  test('rejects unsafe ids and unknown ids', async () => {
    for (const id of ['', '../escape', 'a//b', '.hidden', 'a/../b', 'sp ace', 'semi;colon', 'a/']) {
      await assert.rejects(executor.launch(node, { id, argv: ['true'] }), InvalidLaunchSpecError, id);
    }
    await assert.rejects(
      executor.launch(node, { id: 'ok', argv: ['true'], env: { 'A-B': '1' } }),
      InvalidLaunchSpecError,
    );
    assert.equal(await executor.status(node, 't/never'), undefined);
    await assert.rejects(executor.tail(node, 't/never', 0), UnknownProcessError);
  });
});

describe('stop', () => {
  test('TERM ends a cooperative program and its whole group', async () => {
    const childPidFile = path.join(dir, 'coop-child.pid');
    const { record } = await launch('t/stop-coop', ['sh', '-c', 'sleep 60 & echo $! > "$1"; wait', 'sh', childPidFile]);
    const childPid = Number(await waitForFile(childPidFile, '\n'));
    await executor.stop(node, 't/stop-coop', { graceMs: 20_000 });
    const status = await executor.status(node, 't/stop-coop');
    assert.equal(status?.state, 'exited');
    assert.equal(status?.exitCode, 128 + os.constants.signals.SIGTERM);
    assert.equal(alive(record.pid), false);
    assert.equal(alive(childPid), false, 'the grandchild in the group got TERM too');
  });

  test('a program that ignores TERM is killed after the grace period', async () => {
    const ready = path.join(dir, 'stubborn.ready');
    const program = [
      process.execPath,
      '-e',
      `process.on('SIGTERM', () => console.log('TERM ignored'));
       require('fs').writeFileSync(process.argv[1], 'ready');
       setInterval(() => {}, 1000);`,
      '--',
      ready,
    ];
    const { record } = await launch('t/stop-stubborn', program);
    await waitForFile(ready, 'ready');
    await executor.stop(node, 't/stop-stubborn', { graceMs: 500 });
    const status = await executor.status(node, 't/stop-stubborn');
    assert.equal(status?.state, 'exited');
    assert.equal(status?.exitCode, 128 + os.constants.signals.SIGKILL);
    assert.equal(alive(record.pid), false);
    assert.match((await executor.tail(node, 't/stop-stubborn', 0)).text, /TERM ignored/);
  });

  test('stopping an exited process is a no-op; an unknown id is an error', async () => {
    await launch('t/stop-exited', ['true']);
    await waitForState('t/stop-exited', 'exited');
    await executor.stop(node, 't/stop-exited');
    assert.equal((await executor.status(node, 't/stop-exited'))?.exitCode, 0);
    await assert.rejects(executor.stop(node, 't/never-launched'), UnknownProcessError);
  });
});

describe('lost processes', () => {
  test('a group killed without a chance to write its exit code is lost', async () => {
    const { record } = await launch('t/lost', ['sleep', '60']);
    assert.equal((await executor.status(node, 't/lost'))?.state, 'running');
    process.kill(-record.pgid, 'SIGKILL'); // what a node crash looks like from the record's point of view
    const status = await waitForState('t/lost', 'lost');
    assert.equal(status.exitCode, undefined);
    const relaunched = await launch('t/lost', ['sleep', '60']);
    assert.equal(relaunched.reattached, false, 'a lost id launches again');
    await executor.stop(node, 't/lost', { graceMs: 1000 });
  });

  test('a reused pid (same pid, other start time) is not mistaken for the launched process', async () => {
    const id = 't/reused';
    await launch(id, ['sleep', '60']);
    const recordDir = path.join(dir, 'state', 'procs', 't', 'reused');
    const [pid] = (await readFile(path.join(recordDir, 'pid'), 'utf8')).trim().split(' ');
    // Point the record at a live process of someone else: this test runner, with the launched start time kept.
    const original = await readFile(path.join(recordDir, 'pid'), 'utf8');
    await writeFile(path.join(recordDir, 'pid'), original.replace(`${pid} `, `${process.pid} `));
    assert.equal((await executor.status(node, id))?.state, 'lost');
    await writeFile(path.join(recordDir, 'pid'), original);
    assert.equal((await executor.status(node, id))?.state, 'running');
    await executor.stop(node, id, { graceMs: 1000 });
  });
});

describe('secrets', () => {
  test('a secret reaches the program as env, never argv, record or log', async () => {
    const secret = `s3cret-${Math.random().toString(36).slice(2)}-'quote"$(x)`;
    process.env.KEEL_TEST_LOCAL_SECRET = secret;
    const out = path.join(dir, 'secret-seen.txt');
    const withSecret = await executor.launch(node, {
      id: 't/secret-2',
      argv: ['sh', '-c', 'printf %s "$API_TOKEN" > "$1"; echo "token length ${#API_TOKEN}"; exec sleep 60', 'sh', out],
      secretEnv: { API_TOKEN: 'KEEL_TEST_LOCAL_SECRET' },
    });
    launchedGroups.push(withSecret.record.pgid);
    await waitFor(async () => (await readFile(out, 'utf8').catch(() => '')) === secret);
    const recordDir = path.join(dir, 'state', 'procs', 't', 'secret-2');
    assert.equal(
      existsSync(path.join(recordDir, 'secret.env')),
      false,
      'the secret file is deleted before the program runs',
    );
    assert.ok(!(await readFile(path.join(recordDir, 'record.json'), 'utf8')).includes(secret));
    assert.ok(!JSON.stringify(await executor.status(node, 't/secret-2')).includes(secret));
    const log = (await executor.tail(node, 't/secret-2', 0)).text;
    assert.match(log, new RegExp(`token length ${secret.length}`));
    assert.ok(!log.includes(secret));
    for (const pid of groupMembers(withSecret.record.pgid)) {
      const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      assert.ok(!cmdline.includes(secret), `pid ${pid} argv holds the secret`);
    }
    await executor.stop(node, 't/secret-2', { graceMs: 1000 });
    delete process.env.KEEL_TEST_LOCAL_SECRET;
  });

  test('a secret missing on the control side fails before anything starts', async () => {
    delete process.env.KEEL_TEST_ABSENT_SECRET;
    await assert.rejects(
      executor.launch(node, { id: 't/secret-missing', argv: ['true'], secretEnv: { X: 'KEEL_TEST_ABSENT_SECRET' } }),
      MissingSecretError,
    );
    assert.equal(await executor.status(node, 't/secret-missing'), undefined);
  });
});

describe('detachment', () => {
  test('a launched process survives the SIGKILL of the node process that launched it and is re-attachable', async () => {
    const counter = path.join(dir, 'survivor-starts.txt');
    const stateDir = path.join(dir, 'state');
    const execModule = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/exec/index.ts');
    const argv = ['sh', '-c', 'echo started >> "$1"; exec sleep 60', 'sh', counter];
    const launcherCode = `
      import { LocalExecutor } from ${JSON.stringify(execModule)};
      const executor = new LocalExecutor({ stateDir: ${JSON.stringify(stateDir)} });
      const { record } = await executor.launch({ host: 'localhost', name: 'local-0' }, { id: 't/survivor', argv: ${JSON.stringify(argv)} });
      console.log(JSON.stringify(record));
      setInterval(() => {}, 1000); // stay alive until killed
    `;
    const launcher = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', launcherCode], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      const line = await new Promise<string>((resolve, reject) => {
        let out = '';
        launcher.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString();
          if (out.includes('\n')) resolve(out.split('\n')[0]!);
        });
        launcher.once('exit', (code) => reject(new Error(`launcher exited early with ${code}`)));
      });
      const record = JSON.parse(line) as { pid: number; pgid: number };
      launchedGroups.push(record.pgid);
      const exited = new Promise((resolve) => launcher.once('exit', resolve));
      launcher.kill('SIGKILL');
      await exited;
      assert.equal(alive(record.pid), true, 'the launched process outlives its launcher');
      assert.equal((await executor.status(node, 't/survivor'))?.state, 'running');
      const again = await executor.launch(node, { id: 't/survivor', argv });
      assert.deepEqual({ reattached: again.reattached, pid: again.record.pid }, { reattached: true, pid: record.pid });
      assert.equal(await readFile(counter, 'utf8'), 'started\n');
      await executor.stop(node, 't/survivor', { graceMs: 1000 });
    } finally {
      launcher.kill('SIGKILL');
    }
  });
});

test('completeUtf8Prefix keeps whole characters only', () => {
  const bytes = Buffer.from('aé€😀', 'utf8'); // 1 + 2 + 3 + 4 bytes
  const cuts = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((n) => completeUtf8Prefix(bytes.subarray(0, n)).length);
  assert.deepEqual(cuts, [1, 1, 3, 3, 3, 6, 6, 6, 6, 10]);
});

async function waitFor(predicate: () => Promise<boolean>, limitMs = 20_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) assert.fail('condition not reached');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Pids whose process group is pgid, from /proc. */
function groupMembers(pgid: number): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((entry) => {
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(') ') + 2).split(' ')[2]) === pgid;
      } catch {
        return false;
      }
    })
    .map(Number);
}

test('no more commands run at once than maxConcurrentCommands, over all nodes', async () => {
  const bounded = new LocalExecutor({ stateDir: path.join(dir, 'bounded'), maxConcurrentCommands: 2 });
  const seen = path.join(dir, 'in-flight');
  await mkdir(seen);
  // Each command marks itself in flight, counts the marks, lingers, and leaves.
  const script = 'touch "$1/$$"; n=$(ls "$1" | wc -l); sleep 0.1; rm -f "$1/$$"; echo "$n"';
  const results = await Promise.all(
    Array.from({ length: 8 }, (_, i) =>
      bounded.run({ host: 'localhost', name: `n${i}` }, ['sh', '-c', script, 'keel-bound', seen]),
    ),
  );
  const counts = results.map((r) => Number(r.stdout.trim()));
  assert.ok(
    counts.every((n) => n >= 1 && n <= 2),
    `in flight: ${counts.join(', ')}`,
  );
});
