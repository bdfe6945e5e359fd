// Fault injection on the local cluster (over ssh), through the real worker and dev server: a wrong training
// argument, a lost worker node replaced by a spare, a hung trainer. Timings are scaled down (short rollouts,
// intervals of 3, hang timeouts of seconds).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { WorkflowFailedError } from '@temporalio/client';
import { statusQuery, trainingStatusQuery, type TrainingStatus } from '../../workflows/definitions.js';
import { describeError } from '../../src/client/index.js';
import { nodeProcesses } from '../../src/local/node-processes.js';
import { sshUnavailableReason } from '../support/sshd.js';
import { eventually } from '../support/pipeline.js';
import { startTinyRig, type TinyRig } from '../support/tiny-pipeline.js';

const skip = sshUnavailableReason();

describe('training faults on the local cluster', { skip, timeout: 2_400_000 }, () => {
  let rig: TinyRig;
  before(async () => {
    rig = await startTinyRig({ ssh: true, nodes: 4, spares: 1, portBase: 25100 });
  });
  after(async () => {
    await rig?.stop();
  });

  const trainingOf = (workflowId: string) =>
    rig.env.client.workflow.getHandle(`${workflowId}-training`).query(trainingStatusQuery);

  it('a wrong training argument fails the run at once with the trainer error, no restart', async () => {
    const spec = rig.spec({ name: 'fault-args', model: { saveDir: 'save-args/' }, extraArgs: ['--no-such-flag', '1'] });
    const handle = await rig.env.client.workflow.start('pipeline', {
      taskQueue: rig.taskQueue,
      workflowId: 'fault-args',
      args: [spec],
    });
    const error = await handle.result().then(
      () => assert.fail('expected the run to fail'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof WorkflowFailedError);
    assert.match(describeError(error), /the trainer rejected its arguments: .*unrecognized arguments: --no-such-flag/);
    const training = await trainingOf('fault-args');
    assert.equal(training.restarts, 0);
    assert.equal(training.submissions, 1);
    assert.equal(training.failures[0]?.kind, 'config-error');
  });

  it('a lost worker node is replaced by the spare; training resumes at tracker + 1, losing < save interval', async () => {
    const spec = rig.spec({
      name: 'fault-node',
      model: { saveDir: 'save-node/' },
      rollout: { numRollout: 12 },
      rayHead: { jobEnv: { TINY_ROLLOUT_SLEEP_S: '1' } },
    });
    const workflowId = 'fault-node';
    const handle = await rig.env.client.workflow.start('pipeline', {
      taskQueue: rig.taskQueue,
      workflowId,
      args: [spec],
    });
    await eventually(
      async () => ((await trainingOf(workflowId).catch(() => undefined))?.checkpoints.length ?? 0) >= 1 || undefined,
      600_000,
      'a checkpoint',
    );
    const killed = await rig.cluster.killNode(2);
    assert.ok(killed.length > 0, 'the node had processes to kill');
    await handle.result().catch((e: unknown) => assert.fail(`run failed: ${describeError(e)}`));
    const training: TrainingStatus = await trainingOf(workflowId);
    assert.ok(training.failures.length >= 1, 'the loss was noticed');
    const loss = training.failures[0]!;
    assert.equal(loss.kind, 'node-lost', loss.message);
    assert.ok(training.activeNodes?.includes('127.0.1.5'), `the spare joined: ${training.activeNodes?.join(', ')}`);
    assert.ok(!training.activeNodes?.includes('127.0.1.3'), 'the lost node was left out');
    assert.ok(
      (loss.lastRollout ?? 0) - (loss.tracker ?? 0) <= spec.ckpt.saveInterval - 1,
      `lost ${loss.lastRollout! - loss.tracker!} rollouts`,
    );
    assert.equal(training.checkpoints.at(-1)?.iteration, 11);
    assert.equal((await rig.env.client.workflow.getHandle(workflowId).query(statusQuery)).phase, 'succeeded');
    await rig.cluster.reviveNode(2);
  });

  it('a hung trainer is detected within its hang timeout, stopped, and the run resumes', async () => {
    const spec = rig.spec({
      name: 'fault-hang',
      model: { saveDir: 'save-hang/' },
      rollout: { numRollout: 9 },
      rayHead: { jobEnv: { TINY_ROLLOUT_SLEEP_S: '0.5' } },
      policies: { hang: { startup: '3m', rollout: '20s', checkpointSave: '45s' } },
    });
    const workflowId = 'fault-hang';
    const handle = await rig.env.client.workflow.start('pipeline', {
      taskQueue: rig.taskQueue,
      workflowId,
      args: [spec],
    });
    await eventually(
      async () => ((await trainingOf(workflowId).catch(() => undefined))?.lastRollout ?? -1) >= 1 || undefined,
      600_000,
      'rollouts',
    );
    // Freeze the trainer's driver (train.py) on the head node.
    const head = rig.cluster.nodes[0]!;
    const pids = [];
    for (const pid of await nodeProcesses(head.stateDir)) {
      const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      if (cmdline.includes('train.py') && !cmdline.includes('bash')) pids.push(pid);
    }
    assert.ok(pids.length >= 1, 'found the trainer');
    const frozenAt = Date.now();
    for (const pid of pids) process.kill(pid, 'SIGSTOP');
    await handle.result().catch((e: unknown) => assert.fail(`run failed: ${describeError(e)}`));
    const training = await trainingOf(workflowId);
    const hang = training.failures.find((f) => f.kind === 'hang');
    assert.ok(hang, JSON.stringify(training.failures));
    const detectedAfter = Date.parse(hang.detectedAt ?? hang.at) - frozenAt;
    assert.ok(
      detectedAfter < 20_000 + 15_000,
      `detected ${detectedAfter} ms after the freeze: ${JSON.stringify(hang)}`,
    );
    assert.equal(training.checkpoints.at(-1)?.iteration, 8);
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // stopped by keel, as it should be
      }
    }
  });
});
