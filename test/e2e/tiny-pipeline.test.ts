// End to end: the tiny-local pipeline over ssh on a 4-node local cluster (real sshd, real hf download from the local
// hub, the cast stand-in, a real 4-node torchrun conversion, a real 4-node Ray cluster, the GRPO trainer stand-in as
// a Ray job), through the real worker and dev server. Then a second run skips the preparation steps and a higher
// numRollout continues training from the latest checkpoint. Last, a schedule's retrain runs continue from the latest
// checkpoint and record promotion decisions.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { execa } from 'execa';
import { join } from 'node:path';
import { statusQuery, trainingStatusQuery } from '../../workflows/definitions.js';
import { describeError, KeelSchedules } from '../../src/client/index.js';
import { eventually } from '../support/pipeline.js';
import { sshUnavailableReason } from '../support/sshd.js';
import { startTinyRig, type TinyRig } from '../support/tiny-pipeline.js';
import type { Spec } from '../../src/spec/index.js';
import { RayJobsClient } from '../../src/cluster/ray-jobs.js';
import { dashboardUrlFor } from '../../activities/cluster.js';

const skip = sshUnavailableReason();

describe('tiny-local pipeline over ssh on a 4-node local cluster', { skip, timeout: 1_200_000 }, () => {
  let rig: TinyRig;
  // The worker holds a Hub token (named by the spec as model.hfTokenEnv: HF_TOKEN): it must reach `hf` and nothing else.
  const token = `hf_keelTestToken${Date.now()}abcdefghij`;
  // ... and a W&B key given to the training job by name (rayHead.secretEnv): it must reach the trainer only.
  const wandbKey = `keelWandbTestKey${Date.now()}${process.pid}`;
  before(async () => {
    process.env.HF_TOKEN = token;
    process.env.WANDB_API_KEY = wandbKey;
    rig = await startTinyRig({ ssh: true, nodes: 4, portBase: 24100 });
  });
  after(async () => {
    await rig?.stop();
    delete process.env.WANDB_API_KEY;
  });

  async function run(spec: Spec, workflowId: string) {
    const handle = await rig.env.client.workflow.start('pipeline', {
      taskQueue: rig.taskQueue,
      workflowId,
      args: [spec],
    });
    await handle.result().catch((error: unknown) => {
      throw new Error(`${workflowId} failed: ${describeError(error)}`);
    });
    const pipeline = await handle.query(statusQuery);
    const training = await rig.env.client.workflow.getHandle(`${workflowId}-training`).query(trainingStatusQuery);
    return { pipeline, training };
  }

  it('runs the whole DAG, then skips preparation and resumes training at tracker + 1', async () => {
    const seenByTrainer = join(rig.spec().storage.baseDir, 'wandb-key-seen-by-trainer');
    const spec = rig.spec({
      rayHead: { secretEnv: ['WANDB_API_KEY'], jobEnv: { TINY_RECORD_SECRET_TO: seenByTrainer } },
    });
    assert.equal(spec.cluster.executor.kind, 'ssh');
    const first = await run(spec, 'keel-tiny-e2e-1');
    for (const step of first.pipeline.steps) assert.equal(step.state, 'succeeded', `${step.id}: ${step.reason}`);
    assert.deepEqual(
      first.training.checkpoints.map((c) => c.iteration),
      [2, 5],
    );
    assert.ok(
      first.training.evals.some((e) => e.rollout === 5),
      'eval logged at the last checkpoint',
    );
    const saveDir = join(spec.storage.baseDir, 'tiny-v3_slime');
    assert.equal((await readFile(join(saveDir, 'latest_checkpointed_iteration.txt'), 'utf8')).trim(), '5');

    // The trainer saw the W&B key on the head node (the stand-in records it in a 0600 file, and logs only "set").
    assert.equal(await readFile(seenByTrainer, 'utf8'), wandbKey);

    // The secrets are in no workflow history, process record, argv or log.
    for (const id of ['keel-tiny-e2e-1', 'keel-tiny-e2e-1-training']) {
      const history = JSON.stringify(await rig.env.client.workflow.getHandle(id).fetchHistory());
      assert.ok(!history.includes(token), `${id} history holds the token`);
      assert.ok(!history.includes(wandbKey), `${id} history holds the W&B key`);
    }
    for (const secret of [token, wandbKey]) {
      const { stdout } = await execa('grep', ['-rl', '--', secret, join(spec.storage.baseDir, '..', 'nodes')], {
        reject: false,
      });
      assert.equal(stdout.trim(), '', `files under the node state dirs hold a secret: ${stdout}`);
    }
    // Ray's record of the job -- runtime_env, entrypoint, metadata -- and the job's log, read from the Jobs API.
    const jobs = new RayJobsClient({ url: dashboardUrlFor(spec, spec.cluster.nodes[0]!) });
    const trainJobs = (await jobs.listJobs()).filter((job) => job.metadata.keel_run === 'keel-tiny-e2e-1');
    assert.ok(trainJobs.length > 0);
    for (const job of trainJobs) {
      assert.ok(!JSON.stringify(job).includes(wandbKey), `Ray's record of ${job.submissionId} holds the W&B key`);
      assert.ok(!JSON.stringify(job.runtimeEnv).includes('WANDB_API_KEY'), 'the name is not in runtime_env either');
      const { text } = await jobs.getLogs(job.submissionId);
      assert.ok(!text.includes(wandbKey), `the log of ${job.submissionId} holds the W&B key`);
      assert.match(text, /tiny: WANDB_API_KEY is set in the trainer/);
    }
    // No process's argv holds it (the Ray cluster and the sshd nodes are still up).
    const argvHits: string[] = [];
    for (const pid of (await readdir('/proc')).filter((name) => /^\d+$/.test(name))) {
      const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      if (cmdline.includes(wandbKey)) argvHits.push(cmdline.replaceAll('\0', ' '));
    }
    assert.deepEqual(argvHits, [], 'processes hold the W&B key in argv');

    // The same run again (`npm run demo` twice): every step is skipped as complete, train included; no job.
    const again = await rig.env.client.workflow.start('pipeline', {
      taskQueue: rig.taskQueue,
      workflowId: 'keel-tiny-e2e-1-again',
      args: [spec],
    });
    await again.result().catch((error: unknown) => assert.fail(`the second run failed: ${describeError(error)}`));
    const repeated = await again.query(statusQuery);
    for (const step of repeated.steps) assert.equal(step.state, 'skipped', `${step.id}: ${step.reason}`);
    const trainStep = repeated.steps.find((s) => s.id === 'train')!;
    assert.match(
      trainStep.reason!,
      /training is complete: the tracker .* names rollout 5, the last of rollout.numRollout 6/,
    );
    const clusterStep = repeated.steps.find((s) => s.kind === 'ray-cluster')!;
    assert.match(clusterStep.reason!, /not needed: every step after it is complete/);
    await assert.rejects(
      rig.env.client.workflow.getHandle('keel-tiny-e2e-1-again-training').describe(),
      'no training was started',
    );

    const more = rig.spec({ rollout: { numRollout: 9 } });
    const second = await run(more, 'keel-tiny-e2e-2');
    const byId = Object.fromEntries(second.pipeline.steps.map((s) => [s.id, s]));
    // the toy task's datasets came from the local hub's dataset repo into shared storage, and were read from there
    const data = first.pipeline.steps.find((s) => s.id === 'data');
    assert.match(
      data?.reason ?? '',
      /^all 2 files of dataset keel-tiny\/toy-addition@main present with the sizes and sha256/,
    );
    assert.deepEqual(spec.rollout.promptData, 'toy-addition/train.jsonl');
    for (const id of ['download', 'data', 'cast', 'convert']) {
      assert.equal(byId[id]!.state, 'skipped', `${id} should be skipped: ${byId[id]!.reason}`);
      assert.match(byId[id]!.reason!, /outputs already complete/);
    }
    assert.deepEqual(
      second.training.checkpoints.map((c) => c.iteration),
      [8],
    );
    assert.equal(second.training.failures.length, 0, JSON.stringify(second.training.failures));
    // trained rollouts 6-8 only: the first rollout it logged is tracker + 1
    assert.deepEqual(
      second.training.rewards?.map((r) => r.rollout),
      [6, 7, 8],
    );
  });

  it('a schedule triggered twice retrains from the latest checkpoint and records promotion decisions with both scores', async () => {
    const schedules = new KeelSchedules(rig.env.client, rig.taskQueue);
    const spec = rig.spec({ name: 'tiny-e2e-retrain' });
    const saveDir = join(spec.storage.baseDir, 'tiny-v3_slime');
    const before = Number((await readFile(join(saveDir, 'latest_checkpointed_iteration.txt'), 'utf8')).trim());
    const id = await schedules.create({ spec, every: '7d', rollouts: 3, scheduleId: 'keel-retrain-e2e' });
    try {
      const decisions = [];
      for (let round = 1; round <= 2; round++) {
        await schedules.trigger(id);
        const workflowId = await eventually(
          async () => (await schedules.describe(id)).recentActions[round - 1]?.workflowId || undefined,
          60_000,
          `retrain ${round} to start`,
        );
        const decision = await rig.env.client.workflow.getHandle(workflowId).result();
        const training = await rig.env.client.workflow
          .getHandle(`${workflowId}-pipeline-training`)
          .query(trainingStatusQuery);
        assert.deepEqual(training.failures, [], 'resumed at tracker + 1 (a resume mismatch would be a failure)');
        assert.equal(training.checkpoints.at(-1)?.iteration, before + 3 * round);
        decisions.push(decision);
      }
      assert.equal(decisions[0].iteration, before + 3);
      assert.equal(typeof decisions[0].score, 'number');
      assert.equal(decisions[1].previous?.iteration, decisions[0].promoted ? before + 3 : undefined);
      if (decisions[0].promoted) {
        assert.equal(typeof decisions[1].previous?.score, 'number', 'the second decision names both scores');
        assert.match(decisions[1].reason, /eval \d\.\d{4} (beats|does not beat) the promoted \d\.\d{4}/);
      }
      const promoted = JSON.parse(await readFile(join(saveDir, 'promoted.json'), 'utf8'));
      assert.ok(promoted.iteration === before + 3 || promoted.iteration === before + 6);
    } finally {
      await schedules.delete(id);
    }
  });
});
