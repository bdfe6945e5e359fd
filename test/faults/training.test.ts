// Fault injection on the local cluster (over ssh), through the real worker and dev server: a wrong training
// argument, a lost worker node replaced by a spare, a lost head, a node lost with no spare, a hung trainer, a crash
// loop, a graceful stop and a partial checkpoint. Timings are scaled down (short rollouts, intervals of 3, hang
// timeouts of seconds). The control-plane faults (worker SIGKILL, server restart) are in durability.test.ts.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import {
  resumeUpdate,
  statusQuery,
  stopAfterCheckpointUpdate,
  trainingStatusQuery,
  type TrainingStatus,
} from '../../workflows/definitions.js';
import { modelPaths } from '../../src/spec/paths.js';
import { readTracker } from '../../src/progress/checkpoints.js';
import { describeError } from '../../src/client/index.js';
import { RayDashboardClient } from '../../src/cluster/ray-dashboard.js';
import { dashboardUrlFor } from '../../activities/cluster.js';
import { sshUnavailableReason } from '../support/sshd.js';
import { eventually, eventuallyWhileRunning } from '../support/pipeline.js';
import { startTinyRig, trainerPids, type TinyRig } from '../support/tiny-pipeline.js';

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

  /** Ray's node id of each alive node, by address: a node whose Ray was restarted has a new one. */
  const rayNodeIds = async (head: string): Promise<Map<string, string>> => {
    const spec = rig.spec();
    const url = dashboardUrlFor(spec, { host: head, gpus: spec.cluster.gpusPerNode });
    const alive = await new RayDashboardClient({ url, timeoutMs: 5000 }).aliveNodes();
    return new Map(alive.map((n) => [n.nodeIp, n.nodeId]));
  };

  /** The restart's timeline is recorded in order: detected, healed, resubmitted, running, training again. */
  const assertTimeline = (f: TrainingStatus['failures'][number]) => {
    const times = [f.detectedAt, f.healedAt, f.resubmittedAt, f.jobRunningAt, f.recoveredAt];
    assert.ok(
      times.every((t) => t !== undefined),
      `a complete recovery timeline: ${JSON.stringify(f)}`,
    );
    const ms = times.map((t) => Date.parse(t!));
    // (recorded by the workflow and by activities, whose clocks are this host's: allow a second of skew)
    for (let i = 1; i < ms.length; i++) assert.ok(ms[i]! >= ms[i - 1]! - 1000, `in order: ${JSON.stringify(f)}`);
  };

  it('a wrong training argument fails the run at once with the trainer error, no restart', async () => {
    const spec = rig.spec({
      name: 'fault-args',
      model: { saveDir: 'save-args/' },
      extraArgs: ['--moe-layer-freq', 'bogus'],
    });
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
    assert.match(
      describeError(error),
      /the trainer rejected its arguments: .*argument --moe-layer-freq: invalid --moe-layer-freq 'bogus'/,
    );
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
    const before = await rayNodeIds('127.0.1.1');
    const killed = await rig.cluster.killNode(2);
    assert.ok(killed.length > 0, 'the node had processes to kill');
    await handle.result().catch((e: unknown) => assert.fail(`run failed: ${describeError(e)}`));
    const training: TrainingStatus = await trainingOf(workflowId);
    assert.ok(training.failures.length >= 1, 'the loss was noticed');
    const loss = training.failures[0]!;
    assert.equal(loss.kind, 'node-lost', loss.message);
    // Only what the loss touched was restarted: Ray on the spare; the head and the other workers kept theirs.
    assert.equal(loss.heal, 'repaired', JSON.stringify(loss));
    assert.deepEqual(loss.restartedOn, ['127.0.1.5']);
    assertTimeline(loss);
    const after = await rayNodeIds('127.0.1.1');
    for (const ip of ['127.0.1.1', '127.0.1.2', '127.0.1.4'])
      assert.equal(after.get(ip), before.get(ip), `Ray on ${ip} was not restarted`);
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
    const pids = await trainerPids(head.stateDir);
    assert.ok(pids.length >= 1, 'found the trainer');
    const before = await rayNodeIds(head.host);
    const frozenAt = Date.now();
    for (const pid of pids) process.kill(pid, 'SIGSTOP');
    await handle.result().catch((e: unknown) => assert.fail(`run failed: ${describeError(e)}`));
    const training = await trainingOf(workflowId);
    const hang = training.failures.find((f) => f.kind === 'hang');
    assert.ok(hang, JSON.stringify(training.failures));
    // Every node was healthy: the hung job was stopped and resubmitted on the same Ray, restarted nowhere.
    assert.equal(hang.heal, 'kept', JSON.stringify(hang));
    assert.deepEqual(hang.restartedOn, []);
    assertTimeline(hang);
    assert.deepEqual(await rayNodeIds(head.host), before, 'the same Ray nodes');
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
  const start = async (workflowId: string, spec: unknown) =>
    rig.env.client.workflow.start('pipeline', { taskQueue: rig.taskQueue, workflowId, args: [spec] });
  const untilCheckpoint = (workflowId: string, count = 1) =>
    eventuallyWhileRunning(
      rig.env.client.workflow.getHandle(workflowId),
      async () =>
        ((await trainingOf(workflowId).catch(() => undefined))?.checkpoints.length ?? 0) >= count || undefined,
      600_000,
      `checkpoint ${count}`,
    );
  const succeeded = async (handle: { result(): Promise<unknown> }) =>
    handle.result().catch((e: unknown) => assert.fail(`run failed: ${describeError(e)}`));

  it('a lost head node: a new head is chosen among the healthy nodes and the run resumes', async () => {
    const workflowId = 'fault-head';
    const spec = rig.spec({
      name: workflowId,
      model: { saveDir: 'save-head/' },
      rollout: { numRollout: 12 },
      rayHead: { jobEnv: { TINY_ROLLOUT_SLEEP_S: '1' } },
    });
    const handle = await start(workflowId, spec);
    await untilCheckpoint(workflowId);
    assert.ok((await rig.cluster.killNode(0)).length > 0, 'the head had processes to kill');
    try {
      await succeeded(handle);
    } finally {
      await rig.cluster.reviveNode(0);
    }
    const training = await trainingOf(workflowId);
    const loss = training.failures[0];
    assert.ok(loss, 'the loss was noticed');
    assert.equal(loss.kind, 'head-lost', loss.message);
    assert.equal(training.failures.length, 1, JSON.stringify(training.failures));
    assert.equal(loss.heal, 'restarted', 'a lost head means a new cluster');
    assert.ok(training.activeNodes && !training.activeNodes.includes('127.0.1.1'), `${training.activeNodes}`);
    assert.equal(training.activeNodes.length, 4, 'the layout did not shrink');
    assert.ok((loss.lastRollout ?? 0) - (loss.tracker ?? 0) <= spec.ckpt.saveInterval - 1);
    assert.equal(training.checkpoints.at(-1)?.iteration, 11);
  });

  it('a node lost with no spare: waiting-for-nodes until it is revived, then the run resumes', async (t) => {
    const workflowId = 'fault-nospare';
    const spec = rig.spec({
      name: workflowId,
      model: { saveDir: 'save-nospare/' },
      rollout: { numRollout: 12 },
      cluster: { spares: [] },
      rayHead: { jobEnv: { TINY_ROLLOUT_SLEEP_S: '1' } },
    });
    const handle = await start(workflowId, spec);
    await untilCheckpoint(workflowId);
    assert.ok((await rig.cluster.killNode(2)).length > 0);
    let revived = false;
    const revive = async () => {
      if (!revived) await rig.cluster.reviveNode(2);
      revived = true;
    };
    t.after(revive);
    const waiting = await eventually(
      async () => {
        const t = await trainingOf(workflowId).catch(() => undefined);
        return t?.phase === 'waiting-for-nodes' ? t : undefined;
      },
      180_000,
      'waiting-for-nodes',
    );
    assert.match(waiting.waitingFor ?? '', /3 healthy node\(s\) of 4 needed; down: 127\.0\.1\.3/);
    // It keeps waiting (no smaller layout is tried) until the node is back.
    await new Promise((r) => setTimeout(r, 5000));
    const still = await trainingOf(workflowId);
    assert.equal(still.phase, 'waiting-for-nodes');
    assert.equal(still.submissions, waiting.submissions, 'nothing was submitted while waiting');
    await revive();
    await succeeded(handle);
    const training = await trainingOf(workflowId);
    assert.equal(training.failures[0]?.kind, 'node-lost');
    assert.deepEqual(training.activeNodes, ['127.0.1.1', '127.0.1.2', '127.0.1.3', '127.0.1.4']);
    // The revived node rejoined the Ray the others kept.
    assert.equal(training.failures[0]?.heal, 'repaired', JSON.stringify(training.failures[0]));
    assert.deepEqual(training.failures[0]?.restartedOn, ['127.0.1.3']);
    assert.equal(training.checkpoints.at(-1)?.iteration, 11);
  });

  it('a job that keeps crashing is paused after the restart budget; a resume update continues it', async () => {
    const workflowId = 'fault-crashloop';
    const flag = join(rig.cluster.baseDir, 'crash-flag');
    await writeFile(flag, 'crash\n');
    const spec = rig.spec({
      name: workflowId,
      model: { saveDir: 'save-crashloop/' },
      rollout: { numRollout: 6 },
      rayHead: { jobEnv: { TINY_CRASH_IF_EXISTS: flag } },
      policies: { crashLoop: { maxRestarts: 2, window: '1h' } },
    });
    const handle = await start(workflowId, spec);
    const paused = await eventually(
      async () => {
        const t = await trainingOf(workflowId).catch(() => undefined);
        return t?.phase === 'paused-crash-loop' ? t : undefined;
      },
      600_000,
      'the crash-loop pause',
    );
    assert.equal(paused.failures.length, 3, JSON.stringify(paused.failures));
    for (const f of paused.failures) {
      assert.equal(f.kind, 'job-crashed');
      assert.match(f.message, /injected crash/);
    }
    assert.equal(paused.restarts, 2);
    await new Promise((r) => setTimeout(r, 5000));
    const still = await trainingOf(workflowId);
    assert.equal(still.phase, 'paused-crash-loop', 'no GPU time is burnt while paused');
    assert.equal(still.submissions, 3);
    // The operator fixes the cause and resumes the run: the pipeline forwards it to its training, then answers.
    await rm(flag);
    const answer = await handle.executeUpdate(resumeUpdate);
    assert.match(answer.message, /training restarts its job/);
    await succeeded(handle);
    const training = await trainingOf(workflowId);
    assert.equal(training.submissions, 4);
    assert.equal(training.checkpoints.at(-1)?.iteration, 5);
  });

  it('stopAfterCheckpoint stops at the next checkpoint; a partial checkpoint is ignored for resume, kept, then cleaned', async () => {
    const workflowId = 'fault-partial';
    const spec = rig.spec({
      name: workflowId,
      model: { saveDir: 'save-partial/' },
      rollout: { numRollout: 30 },
      rayHead: { jobEnv: { TINY_ROLLOUT_SLEEP_S: '0.5' } },
    });
    const saveDir = modelPaths(spec).save;
    const handle = await start(workflowId, spec);
    await untilCheckpoint(workflowId);
    const answer = await handle.executeUpdate(stopAfterCheckpointUpdate);
    assert.match(answer.message, /stops its job at its next checkpoint/);
    await succeeded(handle);
    const stopped = await trainingOf(workflowId);
    assert.equal(stopped.phase, 'stopped');
    const tracker = await readTracker(saveDir);
    assert.equal(typeof tracker, 'number');
    assert.equal(tracker, stopped.checkpoints.at(-1)?.iteration);
    assert.ok((tracker as number) < 29, 'stopped early');
    assert.ok(
      stopped.checkpoints.length <= 3,
      `stopped at the next checkpoint: ${JSON.stringify(stopped.checkpoints)}`,
    );

    // A crash in the middle of a save leaves a directory the tracker never named.
    const partialIteration = (tracker as number) + 2;
    const partial = join(saveDir, `iter_${String(partialIteration).padStart(7, '0')}`);
    await mkdir(join(partial, 'torch_dist'), { recursive: true });
    await writeFile(join(partial, 'torch_dist', '__0_0.distcp'), 'half a shard');

    const resumed = `${workflowId}-2`;
    // The resumed trainer starts slower than hang.rollout (as an R1 trainer loading its model does): the tracker it
    // resumes from must not be recorded as a new checkpoint while it starts.
    const second = await start(resumed, {
      ...spec,
      name: resumed,
      rollout: { ...spec.rollout, numRollout: 12 },
      rayHead: { ...spec.rayHead, jobEnv: { ...spec.rayHead.jobEnv, TINY_STARTUP_SLEEP_S: '30' } },
      policies: {
        ...spec.policies,
        hang: { ...spec.policies.hang, rollout: '20s' },
        retention: { keepLast: 2, keepBest: 0 },
      },
    });
    await eventually(
      async () => ((await trainingOf(resumed).catch(() => undefined))?.phase === 'running' ? true : undefined),
      300_000,
      'the resumed job',
    );
    assert.ok(existsSync(partial), 'the partial checkpoint is not deleted before a newer complete one exists');
    await succeeded(second);
    const training = await trainingOf(resumed);
    assert.deepEqual(training.failures, [], 'resume verified: first rollout = tracker + 1, the partial one ignored');
    assert.equal(
      training.checkpoints[0]?.iteration,
      (tracker as number) + 3,
      `the first checkpoint recorded is the first one the resumed trainer saved: ${JSON.stringify(training.checkpoints)}`,
    );
    assert.equal(training.checkpoints.at(-1)?.iteration, 11);
    assert.ok(!existsSync(partial), 'the partial checkpoint is cleaned once a newer complete one exists');
    assert.ok(existsSync(join(saveDir, 'iter_0000011')), 'the tracker iteration is kept');
    // Retention (keep the last 2): status names what is kept -- exactly what is on disk -- and what goes next.
    const onDisk = (await readdir(saveDir))
      .filter((name) => name.startsWith('iter_'))
      .map((name) => Number(name.slice(5)))
      .sort((a, b) => a - b);
    assert.deepEqual(training.retention?.keep, [8, 11]);
    assert.deepEqual(onDisk, [8, 11]);
    assert.deepEqual(training.retention?.deleteNext, [8], 'once iteration 14 is saved, 8 is the third last');
  });
});
