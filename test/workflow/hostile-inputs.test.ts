// Property tests: no input from outside a workflow fails a workflow task. Random payloads go to every signal and
// Update of a live pipeline and its training; supervision reports what the real log parser and tracker reader made of
// random log lines and tracker contents (and, once, raw out-of-range figures). The histories hold no failed workflow
// task and the Keel* search attributes stay in range. fast-check draws the inputs (seeded: a failure is reproducible).
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { Context } from '@temporalio/activity';
import type { WorkflowHandle } from '@temporalio/client';
import proto from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { prepareActivities } from '../../activities/prepare.js';
import { steeringActivities } from '../../activities/steering.js';
import { readTracker } from '../../src/progress/checkpoints.js';
import { SlimeLogFollower } from '../../src/progress/slime-log.js';
import { repoRoot, startDevServer, workflowBundle } from '../support/temporal.js';
import { commandSpec, eventually, tempDir, uniqueQueue } from '../support/pipeline.js';

const seed = 20261207;
const sample = <T>(arbitrary: fc.Arbitrary<T>, n: number, offset = 0): T[] =>
  fc.sample(arbitrary, { seed: seed + offset, numRuns: n });

/** Log lines: slime's own shapes with random (often absurd) numbers, and random text. */
const logLine = fc.oneof(
  fc.string({ maxLength: 200 }),
  fc
    .tuple(fc.constantFrom('perf', 'rollout', 'step', 'eval'), fc.bigInt({ min: 0n, max: 10n ** 400n }), fc.double())
    .map(
      ([word, id, x]) => `${word} ${id}: {'perf/rollout_time': ${x}, 'eval/aime': ${x}, 'rollout/raw_reward': ${x}}`,
    ),
  fc.bigInt({ min: 0n, max: 10n ** 30n }).map((id) => `successfully saved checkpoint from iteration ${id} to /x`),
  fc.nat(50).map((id) => `perf ${id}: {'perf/rollout_time': 1.0}`),
);

/** Tracker contents: numbers of every size, `release`, and junk. */
const trackerText = fc.oneof(
  fc.bigInt({ min: 0n, max: 10n ** 400n }).map(String),
  fc.nat(60).map(String),
  fc.constant('release'),
  fc.string({ maxLength: 40 }),
);

interface Outcome {
  kind: 'checkpoint' | 'succeeded';
  [key: string]: unknown;
}

/** Supervision stand-in: each call folds random lines through the real follower and reads a random tracker. */
function supervisionStandIn(saveDir: string) {
  const chunks = sample(fc.array(logLine, { maxLength: 8 }), 25, 1);
  const trackers = sample(trackerText, 25, 2);
  let call = 0;
  const calls = () => call;
  const supervise = async ({ jobId, afterIteration }: { jobId: string; afterIteration?: number }): Promise<Outcome> => {
    Context.current().heartbeat();
    const cursor = { jobId, offset: 0, resumeVerified: true, evals: [], rewards: [] };
    const n = call++;
    if (n === 0) {
      // raw figures no parser would make: the workflow's own guard must hold
      return {
        kind: 'checkpoint',
        iteration: 1e20,
        saved: [1e20],
        lastRollout: 1e20,
        evals: [{ rollout: 1, score: 1e308 * 10 }],
        cursor,
      };
    }
    if (n >= chunks.length) {
      // every chunk told: the job runs on (heartbeating) until the run stops or cancels it
      for (;;) {
        Context.current().heartbeat();
        await Context.current().sleep(300);
      }
    }
    const follower = new SlimeLogFollower();
    follower.push(chunks[n]!.join('\n') + '\n');
    const summary = follower.summary;
    const evals = Object.entries(summary.evals)
      .filter(([, e]) => e.score !== undefined)
      .map(([rollout, e]) => ({ rollout: Number(rollout), score: e.score! }));
    await writeFile(join(saveDir, 'latest_checkpointed_iteration.txt'), trackers[n]!);
    const tracker = await readTracker(saveDir).catch(() => undefined);
    const iteration =
      typeof tracker === 'number' && tracker > (afterIteration ?? -1) ? tracker : (afterIteration ?? 0) + 1;
    return { kind: 'checkpoint', iteration, lastRollout: summary.lastRollout, evals, cursor };
  };
  return { supervise, calls, chunks: chunks.length };
}

describe('hostile inputs never fail a workflow task', { timeout: 180_000 }, () => {
  let env: TestWorkflowEnvironment;
  before(async () => {
    env = await startDevServer();
  });
  after(async () => {
    await env?.teardown();
  });

  const failedTasks = async (handle: WorkflowHandle): Promise<string[]> => {
    const events = (await handle.fetchHistory()).events ?? [];
    const failed = proto.temporal.api.enums.v1.EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED;
    // UNHANDLED_COMMAND: the server turned a completion down because a signal had just arrived (the task is retried
    // at once with it); not a failure of workflow code.
    const unhandled = proto.temporal.api.enums.v1.WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND;
    return events
      .filter((e) => e.eventType === failed && e.workflowTaskFailedEventAttributes?.cause !== unhandled)
      .map((e) => String(e.workflowTaskFailedEventAttributes?.failure?.message));
  };

  const searchAttributesInRange = async (handle: WorkflowHandle): Promise<void> => {
    const attributes = (await handle.describe()).searchAttributes;
    for (const key of ['KeelRollout', 'KeelCheckpoint']) {
      for (const value of (attributes[key] as unknown[] | undefined) ?? [])
        assert.ok(Number.isSafeInteger(value), `${key} = ${String(value)}`);
    }
    for (const value of (attributes.KeelEvalScore as unknown[] | undefined) ?? [])
      assert.ok(Number.isFinite(value), `KeelEvalScore = ${String(value)}`);
    for (const value of (attributes.KeelPreset as unknown[] | undefined) ?? []) assert.ok(String(value).length <= 100);
  };

  it('random signal and Update payloads, random log lines and trackers: no failed task, attributes in range', async () => {
    const dir = await tempDir('keel-hostile-');
    const spec = commandSpec({
      name: 'hostile',
      dir,
      steps: { convert: { kind: 'torch-dist-convert' }, train: { kind: 'train', needs: ['convert'] } },
      overrides: { policies: { heartbeatTimeout: '3s', initialRetryInterval: '100ms' } },
    });
    const saveDir = join(dir, 'save');
    await import('node:fs/promises').then((fs) => fs.mkdir(saveDir, { recursive: true }));
    const supervision = supervisionStandIn(saveDir);
    let released = false;
    const queue = uniqueQueue('keel-hostile');
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: queue,
      workflowBundle: await workflowBundle(),
      activities: {
        ...prepareActivities({ cwd: repoRoot, env: {} }),
        ...steeringActivities(),
        async checkStep({ stepId }: { stepId: string }) {
          return stepId === 'train'
            ? { complete: false, checkable: false, reason: 'stand-in: trains' }
            : { complete: true, reason: 'stand-in: converted earlier' };
        },
        async submitTrainingJob({ runKey }: { runKey: string }) {
          return { jobId: `${runKey}-train-1`, tracker: -1, created: true };
        },
        async superviseUntilCheckpoint(input: { jobId: string; afterIteration?: number }) {
          // supervision starts once the first payloads have been sent
          while (!released) {
            Context.current().heartbeat();
            await Context.current().sleep(300);
          }
          return supervision.supervise(input);
        },
        async stopTrainingJob() {},
        async stopLaunched() {},
        async applyRetention() {
          return { keep: [], deleted: [], deleteNext: [] };
        },
        async healCluster() {
          return { ready: true, nodes: ['n0'], quarantined: [] };
        },
      },
    });
    const payloads = sample(fc.anything({ maxDepth: 3, withNullPrototype: true, withBigInt: false }), 30, 3);
    const nodePayloads = sample(
      fc.oneof(
        fc.anything({ maxDepth: 3 }),
        fc.record({
          nodes: fc.array(
            fc.record({
              host: fc.oneof(fc.string(), fc.constantFrom('169.254.169.254', '../../x', '10.0.0.9', 'fe80::1')),
              name: fc.oneof(fc.string(), fc.constant('../../x')),
              gpus: fc.oneof(fc.integer(), fc.double()),
            }),
            { maxLength: 3 },
          ),
        }),
      ),
      30,
      4,
    );
    const workflowId = `keel-hostile-${Date.now()}`;
    await worker.runUntil(async () => {
      const pipeline = env.client.workflow.getHandle(workflowId);
      await env.client.workflow.start('pipeline', { taskQueue: queue, workflowId, args: [spec] });
      const training = env.client.workflow.getHandle(`${workflowId}-training`);
      await eventually(
        async () => ((await training.describe().catch(() => undefined)) ? true : undefined),
        30_000,
        'training',
      );
      let refused = 0;
      const signalAll = async (names: string[], payload: unknown) => {
        for (const handle of [pipeline, training]) for (const name of names) await handle.signal(name, payload);
      };
      for (const payload of payloads) {
        await signalAll(['trainingPhase', 'pause', 'resume'], payload);
        for (const update of ['pause', 'resume'])
          await pipeline.executeUpdate(update, { args: [payload] }).catch(() => refused++);
        await pipeline.executeUpdate('resume', { args: [] }).catch(() => undefined);
      }
      for (const payload of nodePayloads) {
        await training.executeUpdate('addNodes', { args: [payload] }).catch(() => refused++);
      }
      assert.ok(refused > 0, 'some payloads were refused by validators');
      // supervision: random log lines and trackers through the real parser and reader
      released = true;
      await eventually(
        async () => (supervision.calls() > supervision.chunks ? true : undefined),
        60_000,
        'supervision',
      );
      // then stopAfterCheckpoint and cancel, with random payloads; the run ends cancelled
      for (const payload of payloads.slice(0, 10)) {
        await signalAll(['stopAfterCheckpoint'], payload);
        await pipeline.executeUpdate('stopAfterCheckpoint', { args: [payload] }).catch(() => undefined);
      }
      for (const payload of payloads.slice(10)) {
        await pipeline.executeUpdate('cancel', { args: [payload] }).catch(() => refused++);
        await signalAll(['cancel'], payload).catch(() => undefined);
      }
      await eventually(
        async () => ((await pipeline.describe()).status.name !== 'RUNNING' ? true : undefined),
        120_000,
        'the run to end',
      );
      const training_ = (await training.query('trainingStatus')) as { checkpoints: { iteration: number }[] };
      assert.ok(training_.checkpoints.length >= 2, 'supervision reported checkpoints');
      for (const handle of [pipeline, training]) {
        assert.deepEqual(await failedTasks(handle), [], `no failed workflow task in ${handle.workflowId}`);
        await searchAttributesInRange(handle);
      }
      // the hostile hosts and names never reached the run state
      const extra =
        ((await training.query('trainingStatus')) as { extraNodes?: { host: string; name?: string }[] }).extraNodes ??
        [];
      for (const node of extra) {
        assert.ok(!/^169\.254\.|^fe80:/.test(node.host) && !node.host.includes('/'), node.host);
        assert.ok(!node.name?.includes('/'), node.name);
      }
    });
  });
});
