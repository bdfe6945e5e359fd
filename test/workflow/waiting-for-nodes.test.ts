// A long wait for nodes keeps every run of the training chain's history bounded, then trains when nodes come back.
// The pause between probes is spent inside the heal activity (the workflow asks for it, backing off to
// policies.nodeWaitMax, 5 minutes by default); here the cluster is a stand-in whose probes answer at once, find no
// nodes until the pauses asked for add up to three days, and then find them: the workflow code, the real worker and
// the real dev server are what is under test; so is the notification of the wait (the real activity, posting to a
// receiver on loopback): one, however many runs of the chain the wait spans. (Temporal's time-skipping test server
// would run real timers, but its binary is downloaded at run time and cannot be installed from a package registry.)
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from '@temporalio/worker';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startDevServer, workflowBundle } from '../support/temporal.js';
import { commandSpec, tempDir, uniqueQueue } from '../support/pipeline.js';
import type { TrainingInput, TrainingResult } from '../../workflows/training.js';
import { notifyActivities } from '../../activities/notify.js';
import { startWebhookReceiver } from '../support/webhook-receiver.js';

const threeDaysMs = 3 * 24 * 3600_000;

/** A cluster with no nodes until three days of pauses have passed, then a healthy one whose job trains to the end. */
function emptyClusterStandIn(env: Record<string, string>) {
  const calls = { probes: 0, pausedMs: 0, longestPauseMs: 0, submissions: 0, stops: 0 };
  return {
    calls,
    activities: {
      ...notifyActivities({ cwd: '/', env }),
      async healCluster({ pauseMs = 0 }: { pauseMs?: number }) {
        calls.probes++;
        calls.pausedMs += pauseMs;
        calls.longestPauseMs = Math.max(calls.longestPauseMs, pauseMs);
        return calls.pausedMs < threeDaysMs
          ? { ready: false, reason: 'need 4 nodes, 0 healthy (stand-in: no nodes yet)', nodes: [], quarantined: [] }
          : { ready: true, reason: 'ready', nodes: ['node-1', 'node-2', 'node-3', 'node-4'], quarantined: [] };
      },
      async submitTrainingJob() {
        calls.submissions++;
        return { jobId: 'keel-wait-train-1', tracker: 39, created: true };
      },
      async superviseUntilCheckpoint() {
        return { kind: 'succeeded', evals: [], lastRollout: 59 };
      },
      async stopTrainingJob() {
        calls.stops++;
      },
      async applyRetention() {
        return { keep: [59], deleted: [], deleteNext: [] };
      },
    },
  };
}

describe('waiting for nodes', { timeout: 600_000 }, () => {
  let env: TestWorkflowEnvironment;
  before(async () => {
    env = await startDevServer();
  });
  after(async () => {
    await env?.teardown();
  });

  it('three days of probes keep every run of the chain under 10,000 events, then training completes', async (t) => {
    const dir = await tempDir('keel-wait-');
    const spec = commandSpec({
      name: 'wait',
      dir,
      steps: { train: { kind: 'train' } },
      // the production pace: 10 s retry interval, backing off to a probe every 5 minutes
      overrides: {
        policies: { initialRetryInterval: '10s', nodeWaitMax: '5m' },
        rollout: { numRollout: 60 },
        notify: { webhooks: [{ urlEnv: 'KEEL_TEST_HOOK_URL' }] },
      },
    });
    const receiver = await startWebhookReceiver();
    t.after(() => receiver.close());
    const cluster = emptyClusterStandIn({ KEEL_TEST_HOOK_URL: `${receiver.origin}/hook` });
    const queue = uniqueQueue('keel-wait');
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: queue,
      workflowBundle: await workflowBundle(),
      activities: cluster.activities,
    });
    const workflowId = `keel-wait-${Date.now()}-training`;
    const input: TrainingInput = {
      spec,
      runKey: 'keel-wait',
      // a node was lost: this training heals before it resubmits
      state: {
        phase: 'healing',
        submissions: 1,
        restarts: 1,
        numRollout: 60,
        checkpoints: [{ iteration: 39, at: new Date().toISOString() }],
        evals: [],
        failures: [],
        restartTimes: [new Date().toISOString()],
        extraNodes: [],
        healing: true,
      },
    };
    const result = await worker.runUntil(async () => {
      const handle = await env.client.workflow.start('training', { taskQueue: queue, workflowId, args: [input] });
      return (await handle.result()) as TrainingResult;
    });
    assert.equal(cluster.calls.longestPauseMs, 5 * 60_000, 'backed off to a probe every 5 minutes');
    assert.ok(cluster.calls.probes >= 864, `${cluster.calls.probes} probes in three days`);
    assert.equal(cluster.calls.submissions, 1, 'one submission once the nodes came back');
    assert.equal(result.restarts, 1);
    assert.equal(result.stoppedEarly, false);

    const runs: { runId: string; events: number }[] = [];
    for await (const execution of env.client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) {
      const history = await env.client.workflow.getHandle(workflowId, execution.runId).fetchHistory();
      runs.push({ runId: execution.runId, events: history.events?.length ?? 0 });
    }
    const total = runs.reduce((sum, r) => sum + r.events, 0);
    t.diagnostic(
      `${cluster.calls.probes} probes; events per run of the chain: ${runs.map((r) => r.events).join(', ')}`,
    );
    assert.ok(runs.length >= 2, `the chain continued as new (runs: ${JSON.stringify(runs)})`);
    for (const run of runs) assert.ok(run.events < 10_000, `run ${run.runId} has ${run.events} events`);
    assert.ok(total > 4000, `the wait wrote ${total} events in all: more than one run holds`);
    // One notification of the wait across every run of the chain, one when it ends.
    assert.deepEqual(
      receiver.posts.map((p) => p.body.kind),
      ['waiting-for-nodes', 'resumed'],
    );
    assert.match(String(receiver.posts[0]!.body.waitingFor), /need 4 nodes, 0 healthy/);
  });
});
