// The pipeline on a real Temporal dev server with the real worker and the local executor running real programs.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { CancelledFailure, WorkflowFailedError } from '@temporalio/client';
import { startDevServer, repoRoot } from '../support/temporal.js';
import { commandSpec, createTestWorker, eventually, tempDir, uniqueQueue } from '../support/pipeline.js';
import { statusQuery, pauseUpdate, resumeUpdate, type PipelineStatus } from '../../workflows/definitions.js';
import type { Spec } from '../../src/spec/index.js';
import { describeError } from '../../src/client/index.js';

let env: TestWorkflowEnvironment;
before(async () => {
  env = await startDevServer();
});
after(async () => {
  await env?.teardown();
});

async function runPipeline(spec: Spec | unknown, taskQueue: string, workflowId: string): Promise<PipelineStatus> {
  const worker = await createTestWorker(env, taskQueue);
  return worker.runUntil(async () => {
    const handle = await env.client.workflow.start('pipeline', { taskQueue, workflowId, args: [spec] });
    await handle.result().catch((error: unknown) => {
      throw new Error(`pipeline ${workflowId} failed: ${describeError(error)}`);
    });
    return handle.query(statusQuery);
  });
}

function step(status: PipelineStatus, id: string) {
  const s = status.steps.find((x) => x.id === id);
  assert.ok(s, `no step ${id}`);
  return s;
}

const t = (iso?: string) => Date.parse(iso ?? '');

describe('pipeline DAG', { timeout: 600_000 }, () => {
  it('runs independent steps in parallel and makes dependants wait', async () => {
    const dir = await tempDir('keel-dag-');
    const spec = commandSpec({
      name: 'dag',
      dir,
      steps: {
        a: { kind: 'command', argv: ['sh', '-c', 'sleep 2'] },
        b: { kind: 'command', argv: ['sh', '-c', 'sleep 2'] },
        c: { kind: 'command', needs: ['a', 'b'], argv: ['true'] },
      },
    });
    const status = await runPipeline(spec, uniqueQueue(), `dag-${Date.now()}`);
    const [a, b, c] = [step(status, 'a'), step(status, 'b'), step(status, 'c')];
    assert.deepEqual([a.state, b.state, c.state], ['succeeded', 'succeeded', 'succeeded']);
    assert.ok(t(a.startedAt) < t(b.endedAt) && t(b.startedAt) < t(a.endedAt), 'a and b overlap in time');
    assert.ok(t(c.startedAt) >= Math.max(t(a.endedAt), t(b.endedAt)), 'c starts after a and b end');
  });

  it('skips a step whose outputs are complete, and runs it again when they are damaged', async () => {
    const dir = await tempDir('keel-skip-');
    // under storage.baseDir (dir/shared): a step's `creates` is checked there only
    await mkdir(join(dir, 'shared'), { recursive: true });
    const out = join(dir, 'shared', 'out.txt');
    const launches = join(dir, 'launches');
    const spec = commandSpec({
      name: 'skip',
      dir,
      steps: {
        make: {
          kind: 'command',
          argv: ['sh', '-c', 'echo run >> "$1"; echo data > "$0"', out, launches],
          creates: out,
        },
      },
    });
    const queue = uniqueQueue();
    const first = await runPipeline(spec, queue, `skip-1-${Date.now()}`);
    assert.equal(step(first, 'make').state, 'succeeded');
    const second = await runPipeline(spec, queue, `skip-2-${Date.now()}`);
    assert.equal(step(second, 'make').state, 'skipped');
    assert.match(step(second, 'make').reason!, /outputs already complete: .*out\.txt exists/);
    await writeFile(out, ''); // damaged: truncated to nothing
    const third = await runPipeline(spec, queue, `skip-3-${Date.now()}`);
    assert.equal(step(third, 'make').state, 'succeeded');
    assert.equal(
      (await readFile(launches, 'utf8')).trim().split('\n').length,
      2,
      'ran on the first and third run only',
    );
  });

  it('counts attempts: failing twice then succeeding ends with attempts = 3', async () => {
    const dir = await tempDir('keel-retry-');
    const counter = join(dir, 'counter');
    const spec = commandSpec({
      name: 'retry',
      dir,
      steps: {
        flaky: {
          kind: 'command',
          argv: [
            'sh',
            '-c',
            'n=$(cat "$0" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$0"; [ "$n" -ge 3 ]',
            counter,
          ],
        },
      },
    });
    const status = await runPipeline(spec, uniqueQueue(), `retry-${Date.now()}`);
    assert.equal(step(status, 'flaky').state, 'succeeded');
    assert.equal(step(status, 'flaky').attempts, 3);
  });

  it('fails at once, non-retryable, on an invalid spec typed into the UI, naming every problem by path', async () => {
    const worker = await createTestWorker(env, 'keel-invalid');
    await worker.runUntil(async () => {
      const handle = await env.client.workflow.start('pipeline', {
        taskQueue: 'keel-invalid',
        workflowId: `invalid-${Date.now()}`,
        args: [
          { preset: 'tiny-local', overrides: { rollout: { numRolout: 5 }, perf: { tensorModelParallelSize: 0 } } },
        ],
      });
      const error = await handle.result().then(
        () => assert.fail('expected a failure'),
        (e: unknown) => e,
      );
      assert.ok(error instanceof WorkflowFailedError);
      const cause = error.cause as { type?: string; message: string; nonRetryable?: boolean };
      assert.equal(cause.type, 'InvalidSpec');
      assert.match(cause.message, /rollout\.numRolout: unknown field -- did you mean 'numRollout'\?/);
      assert.match(cause.message, /perf\.tensorModelParallelSize: Too small/);
      const history = await handle.fetchHistory();
      assert.equal(
        history.events?.filter((e) => e.workflowTaskFailedEventAttributes).length,
        0,
        'no workflow task retries',
      );
    });
  });

  it('fails at once on a plan error, before any step runs', async () => {
    const dir = await tempDir('keel-plan-');
    const marker = join(dir, 'ran');
    const spec = commandSpec({ name: 'planerr', dir, steps: { a: { kind: 'command', argv: ['touch', marker] } } });
    const bad = { ...spec, grpo: { ...spec.grpo, epsClipHigh: 0.1 } };
    const worker = await createTestWorker(env, 'keel-planerr');
    await worker.runUntil(async () => {
      const handle = await env.client.workflow.start('pipeline', {
        taskQueue: 'keel-planerr',
        workflowId: `planerr-${Date.now()}`,
        args: [bad],
      });
      const error = (await handle.result().catch((e: unknown) => e)) as WorkflowFailedError;
      const cause = error.cause as { type?: string; message: string };
      assert.equal(cause.type, 'PlanError');
      assert.match(cause.message, /grpo\.epsClipHigh: eps-clip-high 0\.1 is below eps-clip 0\.2/);
    });
    await assert.rejects(readFile(marker), 'no step ran');
  });

  it("refuses a misspelt train.py flag at the probe, from the cluster's own catalogue: the stand-in is never submitted", async () => {
    const dir = await tempDir('keel-flags-');
    const typo = ['--kl-los-coef', '0.01'];
    // The stand-in, like slime, would take the typo silently and train with the default coefficient.
    const { stdout } = await execa(
      join(repoRoot, '.venv/bin/python3'),
      [
        '-c',
        'import sys, train; print(train.parse_args(sys.argv[1:]).kl_loss_coef)',
        ...['--num-layers', '4', '--hidden-size', '8', '--num-attention-heads', '2', '--ref-load', dir],
        ...['--num-rollout', '1', '--rollout-batch-size', '1', '--n-samples-per-prompt', '1', '--prompt-data', dir],
        ...['--rollout-max-response-len', '1', '--global-batch-size', '1', ...typo],
      ],
      { cwd: join(repoRoot, 'workloads/tiny') },
    );
    assert.equal(stdout.trim(), '0.0');

    const spec = commandSpec({
      name: 'flags',
      dir,
      steps: { probe: { kind: 'probe' }, train: { kind: 'train', needs: ['probe'] } },
      overrides: { extraArgs: typo, cluster: { spares: [] }, ckpt: { saveInterval: 20, refLoad: join(dir, 'ref') } },
    });
    const worker = await createTestWorker(env, 'keel-flags');
    await worker.runUntil(async () => {
      const handle = await env.client.workflow.start('pipeline', {
        taskQueue: 'keel-flags',
        workflowId: `flags-${Date.now()}`,
        args: [spec],
      });
      const error = await handle.result().catch((e: unknown) => e);
      assert.ok(error instanceof WorkflowFailedError);
      assert.match(
        describeError(error),
        /step probe failed after 1 attempt\(s\): train\.py flags the slime on the cluster would not take \(stand-in [0-9a-f]{8}\):\n {2}extraArgs\[0\]: --kl-los-coef is not a flag of stand-in .* \(fix: did you mean --kl-loss-coef\?\)/,
      );
      const status = await handle.query(statusQuery);
      assert.deepEqual(
        status.steps.map((s) => [s.id, s.state]),
        [
          ['probe', 'failed'],
          ['train', 'pending'],
        ],
      );
    });
  });

  it('pause holds new steps, resume lets them run', async () => {
    const dir = await tempDir('keel-pause-');
    const spec = commandSpec({
      name: 'pause',
      dir,
      steps: {
        a: { kind: 'command', argv: ['sh', '-c', 'sleep 2'] },
        b: { kind: 'command', needs: ['a'], argv: ['true'] },
      },
    });
    const queue = uniqueQueue();
    const worker = await createTestWorker(env, queue);
    await worker.runUntil(async () => {
      const handle = await env.client.workflow.start('pipeline', {
        taskQueue: queue,
        workflowId: `pause-${Date.now()}`,
        args: [spec],
      });
      await eventually(
        async () => (await handle.query(statusQuery)).steps[0]?.state === 'running' || undefined,
        30_000,
        'a running',
      );
      await handle.executeUpdate(pauseUpdate);
      await eventually(
        async () => (await handle.query(statusQuery)).steps[0]?.state === 'succeeded' || undefined,
        30_000,
        'a done',
      );
      await new Promise((r) => setTimeout(r, 1500));
      const held = await handle.query(statusQuery);
      assert.equal(held.phase, 'paused');
      assert.equal(step(held, 'b').state, 'pending', 'b does not start while paused');
      await handle.executeUpdate(resumeUpdate);
      await handle.result();
      assert.equal(step(await handle.query(statusQuery), 'b').state, 'succeeded');
    });
  });

  it('keel resume on a running run is refused with the reason; keel cancel stops what keel launched, then the run ends CANCELED', async () => {
    const dir = await tempDir('keel-cancel-');
    const pidFile = join(dir, 'pid');
    const spec = commandSpec({
      name: 'cancel',
      dir,
      steps: { long: { kind: 'command', argv: ['sh', '-c', 'echo $$ > "$0"; exec sleep 120', pidFile] } },
    });
    const queue = uniqueQueue();
    const worker = await createTestWorker(env, queue);
    const keel = (...args: string[]) =>
      execa('node', ['--import', 'tsx', 'src/cli/main.ts', ...args], {
        cwd: repoRoot,
        reject: false,
        env: { KEEL_TEMPORAL_ADDRESS: env.address },
      });
    await worker.runUntil(async () => {
      const workflowId = `cancel-${Date.now()}`;
      const handle = await env.client.workflow.start('pipeline', { taskQueue: queue, workflowId, args: [spec] });
      const pid = await eventually(
        async () => Number((await readFile(pidFile, 'utf8')).trim()) || undefined,
        30_000,
        'pid',
      );
      assert.doesNotThrow(() => process.kill(pid, 0), 'the program runs');

      const resume = await keel('resume', workflowId);
      assert.equal(resume.exitCode, 3, `${resume.stdout}\n${resume.stderr}`);
      assert.match(resume.stderr, /resume refused by .*: the run is not paused \(phase running\)/);

      const cancel = await keel('cancel', workflowId);
      assert.equal(cancel.exitCode, 0, cancel.stderr);
      assert.match(cancel.stdout, /cancel: accepted by .*cancelling/);
      await assert.rejects(handle.result(), (error: unknown) => {
        assert.ok(error instanceof WorkflowFailedError);
        assert.ok(error.cause instanceof CancelledFailure, String(error.cause));
        return true;
      });
      assert.equal((await handle.describe()).status.name, 'CANCELLED');
      const status = await handle.query(statusQuery);
      assert.equal(status.phase, 'cancelled');
      assert.equal(status.cancelReason, 'keel cancel');
      assert.throws(() => process.kill(pid, 0), /ESRCH/, 'the program was stopped');

      const again = await keel('cancel', workflowId);
      assert.equal(again.exitCode, 3, 'a second cancel of an ended run is refused');
    });
  });
});

describe('durability: SIGKILL the worker while a step runs', { timeout: 300_000 }, () => {
  it('re-attaches to the running program with a new worker; never launches it twice', async () => {
    const dir = await tempDir('keel-kill-');
    const launches = join(dir, 'launches');
    await mkdir(join(dir, 'shared'), { recursive: true });
    const out = join(dir, 'shared', 'out');
    const spec = commandSpec({
      name: 'killworker',
      dir,
      steps: {
        long: {
          kind: 'command',
          argv: ['sh', '-c', 'echo launched >> "$0"; sleep 8; echo done > "$1"', launches, out],
          creates: out,
        },
      },
    });
    const queue = uniqueQueue('keel-kill');
    const startWorker = (): ResultPromise =>
      execa('node', ['--import', 'tsx', 'workers/control.ts'], {
        cwd: repoRoot,
        env: { KEEL_TEMPORAL_ADDRESS: env.address, KEEL_TASK_QUEUE: queue, KEEL_LOG_LEVEL: 'warn' },
        reject: false,
        stdio: 'ignore',
      });
    const first = startWorker();
    const handle = await env.client.workflow.start('pipeline', {
      taskQueue: queue,
      workflowId: `kill-${Date.now()}`,
      args: [spec],
    });
    try {
      await eventually(
        async () => (await readFile(launches, 'utf8').catch(() => '')).includes('launched') || undefined,
        90_000,
        'launch',
      );
      first.kill('SIGKILL');
      await first;
      const second = startWorker();
      try {
        await handle.result();
      } finally {
        second.kill('SIGTERM');
        await second;
      }
    } finally {
      first.kill('SIGKILL');
    }
    const status = await handle.query(statusQuery).catch(() => undefined);
    const lines = (await readFile(launches, 'utf8')).trim().split('\n');
    assert.equal(lines.length, 1, `launched ${lines.length} times`);
    assert.equal((await readFile(out, 'utf8')).trim(), 'done');
    if (status) assert.equal(step(status, 'long').state, 'succeeded');
  });
});
