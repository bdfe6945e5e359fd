// Notifications under faults: a crash loop pauses the run and tells the webhooks once (then "resumed" when an
// operator resumes it), a node lost with no spare is announced as quarantined and waiting-for-nodes, a failed run is
// announced, and a receiver that is down (or a variable that is unset) never stops a run from completing. The webhook
// URLs live only in the worker's environment: the histories are searched for them. The Ray job and the cluster are
// stand-ins that follow a script (as in test/workflow/training-exits.test.ts); the workflow code, the real worker,
// the real dev server and the real `sendNotification` activity posting to a real HTTP receiver on loopback are what
// is under test.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import proto from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { resumeUpdate, trainingStatusQuery } from '../../workflows/definitions.js';
import type { PipelineResult } from '../../workflows/pipeline.js';
import { prepareActivities } from '../../activities/prepare.js';
import { notifyActivities } from '../../activities/notify.js';
import { commandSpec, eventually, tempDir, uniqueQueue } from '../support/pipeline.js';
import { describeError } from '../../src/client/index.js';
import { repoRoot, startDevServer, workflowBundle } from '../support/temporal.js';
import {
  closedOrigin,
  startWebhookReceiver,
  type ReceivedPost,
  type WebhookReceiver,
} from '../support/webhook-receiver.js';

/** What the stand-in job does at each supervision: crash, lose a node, reject its arguments, save a checkpoint, end. */
type Step = 'crash' | 'node-lost' | 'bad-args' | 'checkpoint' | 'succeed';

/** A Ray job and cluster that follow `script` (its last step repeats), and a cluster whose first probes find no node. */
function standIns(options: { script: () => Step; probesWithoutNode?: number; env: Record<string, string> }) {
  const calls = { submitted: 0, probes: 0, stopped: 0 };
  let checkpoint = -1;
  return {
    calls,
    activities: {
      ...prepareActivities({ cwd: repoRoot, env: {} }),
      ...notifyActivities({ cwd: repoRoot, env: options.env }),
      async checkStep({ stepId }: { stepId: string }) {
        return stepId === 'train'
          ? { complete: false, checkable: false, reason: 'stand-in: trains' }
          : { complete: true, reason: 'stand-in: converted earlier' };
      },
      async submitTrainingJob({ runKey }: { runKey: string }) {
        calls.submitted++;
        return { jobId: `${runKey}-train-${calls.submitted}`, tracker: checkpoint, created: true };
      },
      async superviseUntilCheckpoint({ jobId }: { jobId: string }) {
        const cursor = { jobId, offset: 0, resumeVerified: true, evals: [], rewards: [] };
        const step = options.script();
        if (step === 'checkpoint') {
          checkpoint += 2;
          const evals = [{ rollout: checkpoint, score: 0.5 }];
          return {
            kind: 'checkpoint',
            iteration: checkpoint,
            saved: [checkpoint],
            evals,
            lastRollout: checkpoint,
            cursor,
          };
        }
        if (step === 'succeed') return { kind: 'succeeded', evals: [], lastRollout: checkpoint, cursor };
        const failure = {
          crash: { kind: 'job-crashed', message: 'RuntimeError: stand-in: injected crash' },
          'node-lost': { kind: 'node-lost', message: 'stand-in: node-3 stopped answering' },
          'bad-args': { kind: 'config-error', message: "train.py: error: argument --moe-layer-freq: invalid 'bogus'" },
        }[step];
        return {
          kind: 'failed',
          failure: { ...failure, lastRollout: checkpoint, tracker: checkpoint },
          evals: [],
          cursor,
        };
      },
      async healCluster() {
        calls.probes++;
        const nodes = ['node-1', 'node-2', 'node-3', 'node-4'];
        return calls.probes <= (options.probesWithoutNode ?? 0)
          ? {
              ready: false,
              reason: '3 healthy node(s) of 4 needed; down: node-3',
              nodes: nodes.slice(0, 3),
              quarantined: ['node-3'],
            }
          : { ready: true, reason: `Ray up on ${nodes.join(', ')}`, nodes, quarantined: [] };
      },
      async stopTrainingJob() {
        calls.stopped++;
      },
      async stopLaunched() {},
      async applyRetention() {
        return { keep: [], deleted: [], deleteNext: [] };
      },
    },
  };
}

/** The kinds received on one path, in order (a post the receiver refused included, marked `!`). */
const kindsAt = (posts: ReceivedPost[], path: string) =>
  posts
    .filter((p) => p.path === path)
    .map((p) => `${String(p.body.kind ?? slackKind(p))}${p.status === 200 ? '' : '!'}`);

/** A Slack-format body carries the kind in its event id (`_event <workflow>/<run>/<kind>/..._`). */
function slackKind(post: ReceivedPost): string {
  const id = String(post.headers['idempotency-key'] ?? '');
  return id.split('/')[2] ?? '?';
}

describe('notifications under faults', { timeout: 300_000 }, () => {
  let env: TestWorkflowEnvironment;
  let receiver: WebhookReceiver;
  // The secret parts of the URLs: whoever has a webhook URL can post to it.
  const secret = randomUUID();
  const jsonPath = `/hooks/${secret}/json`;
  const slackPath = `/hooks/${secret}/slack`;
  const downSecret = randomUUID();
  let hookEnv: Record<string, string>;

  before(async () => {
    env = await startDevServer();
    receiver = await startWebhookReceiver();
    hookEnv = {
      KEEL_TEST_JSON_HOOK_URL: `${receiver.origin}${jsonPath}`,
      KEEL_TEST_SLACK_HOOK_URL: `${receiver.origin}${slackPath}`,
      KEEL_TEST_DOWN_HOOK_URL: `${await closedOrigin()}/hooks/${downSecret}`,
    };
  });
  after(async () => {
    await receiver?.close();
    await env?.teardown();
  });

  const specFor = async (name: string, webhooks: unknown[], policies: Record<string, unknown> = {}) =>
    commandSpec({
      name,
      dir: await tempDir(`keel-${name}-`),
      steps: { convert: { kind: 'torch-dist-convert' }, train: { kind: 'train', needs: ['convert'] } },
      overrides: {
        policies: { heartbeatTimeout: '2s', initialRetryInterval: '100ms', ...policies },
        notify: { webhooks },
      },
    });

  /** Run the pipeline on a worker with these stand-ins; `during` steers it while it runs. */
  async function run(
    workflowId: string,
    spec: unknown,
    stand: ReturnType<typeof standIns>,
    during?: (handle: WorkflowHandle) => Promise<void>,
  ): Promise<unknown> {
    const queue = uniqueQueue('keel-notify');
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: queue,
      workflowBundle: await workflowBundle(),
      activities: stand.activities,
    });
    return worker.runUntil(async () => {
      const handle = await env.client.workflow.start('pipeline', { taskQueue: queue, workflowId, args: [spec] });
      await during?.(handle);
      return handle.result().then(
        (result) => result,
        (error: unknown) => error,
      );
    });
  }

  /** Every history of the run (the pipeline, every run of its training chain). */
  async function historiesOf(workflowId: string) {
    const histories = [];
    for (const id of [workflowId, `${workflowId}-training`]) {
      for await (const execution of env.client.workflow.list({ query: `WorkflowId = '${id}'` })) {
        histories.push({
          workflowId: id,
          history: await env.client.workflow.getHandle(id, execution.runId).fetchHistory(),
        });
      }
    }
    return histories;
  }

  /** The run's histories as the bytes Temporal stores; each must also replay against the workflow code. */
  async function historyBytes(workflowId: string): Promise<Buffer> {
    const histories = await historiesOf(workflowId);
    let replayed = 0;
    for await (const replay of Worker.runReplayHistories({ workflowBundle: await workflowBundle() }, histories)) {
      assert.equal(replay.error, undefined, `${replay.workflowId} replays: ${String(replay.error)}`);
      replayed++;
    }
    assert.equal(replayed, histories.length);
    return Buffer.concat(
      histories.map(({ history }) => Buffer.from(proto.temporal.api.history.v1.History.encode(history).finish())),
    );
  }

  it('a crash loop: one "paused", then "resumed" when an operator resumes; a refused post is retried with the same id', async () => {
    const workflowId = `keel-notify-crashloop-${Date.now()}`;
    let crashing = true;
    let checkpoints = 0;
    const stand = standIns({
      env: hookEnv,
      script: () => (crashing ? 'crash' : checkpoints++ < 1 ? 'checkpoint' : 'succeed'),
    });
    const spec = await specFor(
      'notify-crashloop',
      [
        { urlEnv: 'KEEL_TEST_JSON_HOOK_URL', format: 'json', checkpoints: true, evals: true },
        { urlEnv: 'KEEL_TEST_SLACK_HOOK_URL', format: 'slack' },
      ],
      { crashLoop: { maxRestarts: 2, window: '1h' } },
    );
    // The Slack receiver is briefly unavailable: the first post is answered 503 and retried.
    receiver.failNext(slackPath, 1, 503);
    const result = await run(workflowId, spec, stand, async (handle) => {
      await eventually(
        async () => receiver.posts.some((p) => p.path === jsonPath && p.body.kind === 'paused') || undefined,
        60_000,
        'the "paused" notification',
      );
      const training = await env.client.workflow.getHandle(`${workflowId}-training`).query(trainingStatusQuery);
      assert.equal(training.phase, 'paused-crash-loop');
      // Paused: nothing more is sent however long it waits.
      await new Promise((r) => setTimeout(r, 2000));
      assert.deepEqual(kindsAt(receiver.posts, jsonPath), ['paused']);
      crashing = false;
      // (the pipeline learns of the pause by a signal from its training: accepted once it has it)
      const answer = await eventually(() => handle.executeUpdate(resumeUpdate), 30_000, 'the resume accepted');
      assert.match(answer.message, /training restarts its job/);
    });
    assert.ok(!(result instanceof Error), `the run completed: ${describeError(result)}`);
    assert.equal(stand.calls.submitted, 4, 'three crashes, then the resumed job');

    assert.deepEqual(kindsAt(receiver.posts, jsonPath), ['paused', 'resumed', 'checkpoint', 'eval', 'run-completed']);
    assert.deepEqual(kindsAt(receiver.posts, slackPath), ['paused!', 'paused', 'resumed', 'run-completed']);

    const json = receiver.posts.filter((p) => p.path === jsonPath);
    const paused = json[0]!.body;
    assert.equal(paused.run, 'notify-crashloop');
    assert.equal(paused.workflowId, workflowId);
    assert.equal(paused.reason, 'crash-loop');
    assert.equal(paused.restarts, 2);
    assert.equal(paused.failure, 'job-crashed');
    assert.match(String(paused.text), new RegExp(`injected crash.*keel resume ${workflowId}`));
    assert.match(String(paused.id), new RegExp(`^${workflowId}-training/[0-9a-f-]{36}/paused/3$`));
    for (const post of json) assert.equal(post.headers['idempotency-key'], post.body.id, 'the id is also a header');
    assert.equal(new Set(json.map((p) => p.body.id)).size, json.length, 'one id per event');
    assert.deepEqual(
      [json[2]!.body.iteration, json[3]!.body.rollout, json[3]!.body.score],
      [1, 1, 0.5],
      'the checkpoint and the eval, with their figures',
    );
    assert.match(
      String(json[4]!.body.text),
      /the run completed: 1 step\(s\) ran, 1 skipped; training ended at checkpoint 1/,
    );

    const slack = receiver.posts.filter((p) => p.path === slackPath);
    assert.deepEqual(Object.keys(slack[1]!.body), ['text'], 'a Slack-compatible body: {"text": ...}');
    assert.match(String(slack[1]!.body.text), /^\*notify-crashloop\*: training is paused for an operator/);
    assert.equal(
      slack[0]!.headers['idempotency-key'],
      slack[1]!.headers['idempotency-key'],
      'the retry has the same id',
    );
    assert.equal(slack[1]!.headers['idempotency-key'], paused.id, 'every webhook gets the same id for the same event');

    const history = await historyBytes(workflowId);
    assert.ok(history.includes('KEEL_TEST_SLACK_HOOK_URL'), 'the search sees the history: the variable name is there');
    assert.ok(history.includes('sendNotification'), 'the notifications are activities of this history');
    assert.ok(history.includes('keel-0.3-notifications'), 'behind their patch');
    assert.ok(!history.includes(secret), 'no webhook URL (nor its secret path) in any history of the run');
    assert.ok(!history.includes(receiver.origin), 'nor the receiver address');
  });

  it('a node lost with no spare: "node-quarantined" and one "waiting-for-nodes", then "resumed" when nodes are back', async () => {
    const workflowId = `keel-notify-nospare-${Date.now()}`;
    let supervisions = 0;
    const script: Step[] = ['node-lost', 'checkpoint', 'succeed'];
    const stand = standIns({ env: hookEnv, probesWithoutNode: 4, script: () => script[Math.min(supervisions++, 2)]! });
    const spec = await specFor('notify-nospare', [{ urlEnv: 'KEEL_TEST_JSON_HOOK_URL', format: 'json' }]);
    const before = receiver.posts.length;
    const result = await run(workflowId, spec, stand);
    assert.ok(!(result instanceof Error), `the run completed: ${describeError(result)}`);
    assert.equal(stand.calls.probes, 5, 'four probes found too few nodes, the fifth healed');
    const posts = receiver.posts.slice(before);
    assert.deepEqual(kindsAt(posts, jsonPath), ['node-quarantined', 'waiting-for-nodes', 'resumed', 'run-completed']);
    const [quarantined, waiting, resumed] = posts.map((p) => p.body);
    assert.equal(quarantined!.node, 'node-3');
    assert.equal(quarantined!.failure, 'node-lost');
    assert.match(String(waiting!.waitingFor), /3 healthy node\(s\) of 4 needed; down: node-3/);
    assert.match(String(waiting!.id), /\/waiting-for-nodes\/1$/);
    assert.equal(resumed!.after, 'waiting-for-nodes');
    assert.deepEqual(resumed!.nodes, ['node-1', 'node-2', 'node-3', 'node-4']);
    assert.ok(!(await historyBytes(workflowId)).includes(secret), 'the histories replay; no URL in them');
  });

  it('a failed run is announced: "run-failed" names the step and the cause', async () => {
    const workflowId = `keel-notify-failed-${Date.now()}`;
    const stand = standIns({ env: hookEnv, script: () => 'bad-args' });
    const spec = await specFor('notify-failed', [{ urlEnv: 'KEEL_TEST_JSON_HOOK_URL', format: 'json' }]);
    const before = receiver.posts.length;
    const result = await run(workflowId, spec, stand);
    assert.ok(result instanceof WorkflowFailedError, 'the run failed');
    const posts = receiver.posts.slice(before);
    assert.deepEqual(kindsAt(posts, jsonPath), ['run-failed']);
    assert.equal(posts[0]!.body.step, 'train');
    assert.match(
      String(posts[0]!.body.text),
      /the run failed: step train failed after 1 attempt\(s\): .*invalid 'bogus'/,
    );
  });

  it('a receiver that is down, or a variable that is unset, never stops the run; the URL stays out of history', async () => {
    const workflowId = `keel-notify-down-${Date.now()}`;
    let supervisions = 0;
    const script: Step[] = ['crash', 'checkpoint', 'succeed'];
    const stand = standIns({ env: hookEnv, script: () => script[Math.min(supervisions++, 2)]! });
    const spec = await specFor('notify-down', [
      { urlEnv: 'KEEL_TEST_DOWN_HOOK_URL', format: 'json', checkpoints: true },
      { urlEnv: 'KEEL_TEST_UNSET_HOOK_URL', format: 'slack', checkpoints: true },
    ]);
    const result = await run(workflowId, spec, stand);
    assert.ok(!(result instanceof Error), `the run completed: ${describeError(result)}`);

    // Every post was tried to the end of its retry budget (6 attempts), or given up at once for the unset variable.
    const events = (await env.client.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
    const failures = events
      .map((e) => e.activityTaskFailedEventAttributes?.failure)
      .filter((f): f is NonNullable<typeof f> => !!f);
    assert.ok(failures.length >= 2, `the pipeline's run-completed posts failed: ${failures.length}`);
    const messages = failures.map((f) => `${f.message}`);
    assert.ok(
      messages.some((m) => /not reached \(ECONNREFUSED\) \(attempt 6 of 6\)/.test(m)),
      messages.join('\n'),
    );
    assert.ok(messages.some((m) => /KEEL_TEST_UNSET_HOOK_URL is not set in the worker's environment/.test(m)));
    const train = (result as PipelineResult).steps.find((s) => s.id === 'train');
    assert.equal(train?.state, 'succeeded');
    assert.equal(train?.outputs?.lastCheckpoint, 1, 'training saved its checkpoint, announced to no one');

    const history = await historyBytes(workflowId);
    assert.ok(history.includes('KEEL_TEST_DOWN_HOOK_URL'), 'the search sees the history: the variable name is there');
    assert.ok(!history.includes(downSecret), 'the unreachable URL is not in any failure recorded');
    assert.ok(!history.includes(hookEnv.KEEL_TEST_DOWN_HOOK_URL!.split('/hooks/')[0]!), 'nor its address');
  });
});
