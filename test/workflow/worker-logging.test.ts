// `keel demo` on a pipe (no terminal): stdout carries the progress and the error in words, never a JSON log line; the
// worker's log lines -- the Temporal SDK's WARN "Activity failed" among them -- are in the log file whose path the
// demo printed. With --log-format pretty they are pino-pretty text on stderr. The worker runs in a child process
// (the Temporal Runtime and its logger are per process) against a real dev server.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { repoRoot, startDevServer, workflowBundle } from '../support/temporal.js';

const run = promisify(execFile);
const { KEEL_LOG_LEVEL: _level, ...withoutLogLevel } = process.env;
const child = `${repoRoot}test/workflow/logging/child.ts`;

function jsonLines(text: string): string[] {
  return text.split('\n').filter((line) => {
    try {
      return typeof JSON.parse(line) === 'object';
    } catch {
      return false;
    }
  });
}

describe('the demo keeps worker logs off the terminal', () => {
  let env: TestWorkflowEnvironment;
  let root: string;
  let bundle: string;
  before(async () => {
    env = await startDevServer();
    root = await mkdtemp(join(tmpdir(), 'keel-logging-'));
    bundle = join(root, 'workflows.js');
    await writeFile(bundle, (await workflowBundle(`${repoRoot}test/workflow/logging/workflows.ts`)).code);
  });
  after(async () => {
    await env?.teardown();
    await rm(root, { recursive: true, force: true });
  });

  const runChild = (format?: string) =>
    run(process.execPath, ['--import', 'tsx', child], {
      cwd: repoRoot,
      env: {
        ...withoutLogLevel,
        KEEL_TEST_ADDRESS: env.address,
        KEEL_TEST_ROOT: root,
        KEEL_TEST_BUNDLE: bundle,
        ...(format ? { KEEL_TEST_LOG_FORMAT: format } : {}),
      },
      timeout: 120_000,
    });

  it('by default: progress and the error in words on stdout, JSON lines in the printed log file', async () => {
    const { stdout, stderr } = await runChild();
    assert.deepEqual(jsonLines(stdout), [], `JSON on stdout:\n${stdout}`);
    assert.deepEqual(jsonLines(stderr), [], `JSON on stderr:\n${stderr}`);
    assert.match(stdout, /fails-twice: FAILED: .*no space left on device/);
    const path = /worker logs \(JSON lines\): (.+)$/m.exec(stdout)?.[1];
    assert.ok(path?.startsWith(join(root, '.keel', 'logs', 'demo-')), `no log file path printed:\n${stdout}`);
    if (!path) return;
    const lines = (await readFile(path, 'utf8')).trim().split('\n');
    const entries = lines.map((line) => JSON.parse(line) as { level: number; msg: string; name: string });
    const failed = entries.filter((e) => e.level === 40 && e.msg === 'Activity failed');
    assert.equal(failed.length, 2, `one SDK WARN per attempt in the file:\n${lines.join('\n')}`);
    assert.ok(failed.every((e) => e.name === 'keel-worker'));
    assert.ok(
      lines.some((l) => l.includes('no space left on device')),
      'the error is in the file',
    );
  });

  it('--log-format pretty: the SDK WARN lines pretty-printed on stderr, no JSON anywhere', async () => {
    const { stdout, stderr } = await runChild('pretty');
    assert.match(stdout, /worker logs: pretty-printed on stderr/);
    assert.deepEqual(jsonLines(stdout), [], `JSON on stdout:\n${stdout}`);
    assert.deepEqual(jsonLines(stderr), [], `JSON on stderr:\n${stderr}`);
    assert.match(stderr, /WARN.*\(keel-worker\): Activity failed/);
  });
});
