// The tiny GRPO trainer (workloads/tiny/train.py) as a real Ray job on a real 2-node local Ray cluster: slime's log
// lines (read with keel's own parser), slime's checkpoint layout (read with keel's own inspection), resume at
// tracker + 1 with --load, the placement-group wait, and argument errors.
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RayJobsClient, type RayJob } from '../../src/cluster/ray-jobs.js';
import { inspectSaveDir, readTracker, torchDistLayoutProblems } from '../../src/progress/checkpoints.js';
import { parseSlimeLogLine, type SlimeLogEvent } from '../../src/progress/slime-log.js';
import { freePort, startRayCluster, type LocalRayCluster } from '../support/ray-cluster.js';
import {
  convertWithTorchrun,
  listDir,
  pretrainTinyModel,
  python,
  run,
  trainArgs,
  trainEntrypoint,
  trainScript,
  type TrainArgsOptions,
} from '../support/tiny-train.js';

describe('tiny GRPO trainer as a Ray job (2-node local Ray cluster)', () => {
  let root: string;
  let cluster: LocalRayCluster | undefined;
  let jobs: RayJobsClient;
  let base: TrainArgsOptions;
  const tag = `${process.pid}-${Date.now()}`;

  before(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'keel-tiny-train-'));
    const modelDir = path.join(root, 'tiny-v3-bf16');
    const refLoad = path.join(root, 'tiny-v3_torch_dist');
    const [, started] = await Promise.all([
      pretrainTinyModel(modelDir, 15).then(async () => {
        const results = await convertWithTorchrun({
          hfDir: modelDir,
          saveDir: refLoad,
          nodes: 1,
          masterPort: await freePort('127.0.0.1'),
          parallelArgs: [],
        });
        assert.equal(results[0]!.code, 0, results[0]!.stderr.slice(-3000));
      }),
      startRayCluster({
        nodes: [
          { ip: '127.0.1.1', gpus: 1 },
          { ip: '127.0.1.2', gpus: 1 },
        ],
      }),
    ]);
    cluster = started;
    jobs = new RayJobsClient({ url: cluster.dashboardUrl });
    base = {
      modelDir,
      refLoad,
      saveDir: path.join(root, 'tiny-v3_slime'),
      numRollout: 4,
      saveInterval: 2,
      evalInterval: 2,
      actorNumNodes: 2,
      actorNumGpusPerNode: 1,
    };
  });

  after(async () => {
    await cluster?.stop();
    await fs.rm(root, { recursive: true, force: true });
  });

  async function submit(name: string, args: string[], env: Record<string, string> = {}): Promise<string> {
    const submissionId = `tiny-train-${name}-${tag}`;
    await jobs.submitJob({
      submissionId,
      entrypoint: trainEntrypoint(args),
      runtimeEnv: { env_vars: { TINY_PG_WAIT_LOG_S: '1', ...env } },
    });
    return submissionId;
  }

  async function finish(submissionId: string): Promise<{ job: RayJob; logs: string; events: SlimeLogEvent[] }> {
    let job: RayJob | undefined;
    const deadline = Date.now() + 240_000;
    while (Date.now() < deadline) {
      job = await jobs.getJob(submissionId);
      if (job && ['SUCCEEDED', 'FAILED', 'STOPPED'].includes(job.status)) break;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    assert.ok(job, `job ${submissionId} vanished`);
    const { text: logs } = await jobs.getLogs(submissionId);
    const events = logs
      .split('\n')
      .map((line) => parseSlimeLogLine(line))
      .filter((event): event is SlimeLogEvent => event !== undefined);
    return { job, logs, events };
  }

  const ofType = <T extends SlimeLogEvent['type']>(events: SlimeLogEvent[], type: T) =>
    events.filter((event): event is Extract<SlimeLogEvent, { type: T }> => event.type === type);

  it('runs rollouts, logs slime lines, saves and evaluates on the intervals, then resumes at tracker + 1', async () => {
    const first = await finish(await submit('first', await trainArgs(base)));
    assert.equal(first.job.status, 'SUCCEEDED', first.logs.slice(-4000));

    const loaded = ofType(first.events, 'checkpoint-loaded');
    assert.deepEqual(
      loaded.map((event) => [event.dir, event.iteration]),
      [[base.refLoad, 0]],
    );
    assert.deepEqual(
      ofType(first.events, 'rollout-done').map((event) => event.rollout),
      [0, 1, 2, 3],
    );
    assert.deepEqual(
      ofType(first.events, 'rollout-stats').map((event) => event.rollout),
      [0, 1, 2, 3],
    );
    const steps = ofType(first.events, 'train-step');
    assert.deepEqual(
      steps.map((event) => event.step),
      [0, 1, 2, 3],
    );
    for (const step of steps) {
      assert.ok(Number.isFinite(step.metrics['train/loss']), JSON.stringify(step.metrics));
      assert.ok(step.metrics['train/grad_norm']! > 0, JSON.stringify(step.metrics));
    }
    for (const done of ofType(first.events, 'rollout-done')) {
      assert.ok(done.metrics['perf/rollout_time']! > 0);
      // Dynamic sampling kept only groups with mixed rewards, so the kept samples' mean reward is strictly inside (0, 1).
      const stats = ofType(first.events, 'rollout-stats').find((event) => event.rollout === done.rollout)!;
      assert.ok(stats.metrics['rollout/raw_reward']! > 0 && stats.metrics['rollout/raw_reward']! < 1);
    }
    // slime evaluates before training at rollout 0, then when (rollout_id + 1) % eval_interval == 0.
    const evals = ofType(first.events, 'eval');
    assert.deepEqual(
      evals.map((event) => event.rollout),
      [0, 1, 3],
    );
    for (const event of evals) {
      assert.equal(event.scoreKey, 'eval/aime');
      assert.ok(event.score! >= 0 && event.score! <= 1);
      assert.ok('eval/aime-truncated_ratio' in event.metrics);
    }
    assert.deepEqual(
      ofType(first.events, 'checkpoint-saved').map((event) => [event.iteration, event.dir]),
      [
        [1, base.saveDir],
        [3, base.saveDir],
      ],
    );
    const saving = ofType(first.events, 'checkpoint-saving');
    assert.deepEqual(
      saving.map((event) => event.format),
      ['torch_dist', 'torch_dist'],
    );

    assert.equal(await readTracker(base.saveDir), 3);
    assert.deepEqual(await listDir(base.saveDir), [
      'iter_0000001',
      'iter_0000003',
      'latest_checkpointed_iteration.txt',
      'rollout',
    ]);
    for (const iteration of ['iter_0000001', 'iter_0000003']) {
      const dir = path.join(base.saveDir, iteration);
      assert.deepEqual(await torchDistLayoutProblems(dir), []);
      // Both ranks wrote a shard: weights and optimizer state are split between them.
      assert.deepEqual(
        (await listDir(dir)).filter((name) => name.endsWith('.distcp')),
        ['__0_0.distcp', '__1_0.distcp'],
      );
    }
    assert.deepEqual(await listDir(path.join(base.saveDir, 'rollout')), [
      'global_dataset_state_dict_1.pt',
      'global_dataset_state_dict_3.pt',
    ]);
    const inspection = await inspectSaveDir(base.saveDir);
    assert.equal(inspection.tracker, 3);

    // Raise --num-rollout and resubmit with the same --load: slime restarts at tracker + 1 with the saved state.
    const second = await finish(await submit('resume', await trainArgs({ ...base, numRollout: 6 })));
    assert.equal(second.job.status, 'SUCCEEDED', second.logs.slice(-4000));
    assert.deepEqual(
      ofType(second.events, 'checkpoint-loaded').map((event) => [event.dir, event.iteration]),
      [[base.saveDir, 3]],
    );
    assert.deepEqual(
      ofType(second.events, 'rollout-done').map((event) => event.rollout),
      [4, 5],
    );
    assert.deepEqual(
      ofType(second.events, 'train-step').map((event) => event.step),
      [4, 5],
    );
    assert.deepEqual(
      ofType(second.events, 'eval').map((event) => event.rollout),
      [5],
    );
    assert.equal(await readTracker(base.saveDir), 5);
    assert.ok((await listDir(path.join(base.saveDir, 'rollout'))).includes('global_dataset_state_dict_5.pt'));
    // The resumed policy continued from the saved one (KL to the reference is not reset to zero).
    assert.ok(ofType(second.events, 'train-step')[0]!.metrics['train/kl_loss']! > 0);
  });

  it('waits, visibly and without end, for a placement group the cluster cannot hold', async () => {
    const id = await submit(
      'pg-wait',
      await trainArgs({ ...base, saveDir: path.join(root, 'never'), actorNumNodes: 3 }),
    );
    try {
      let waiting: Extract<SlimeLogEvent, { type: 'placement-group-waiting' }>[] = [];
      const deadline = Date.now() + 90_000;
      while (waiting.length < 2 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 1000));
        const { text } = await jobs.getLogs(id);
        waiting = text
          .split('\n')
          .map((line) => parseSlimeLogLine(line))
          .filter((event): event is Extract<SlimeLogEvent, { type: 'placement-group-waiting' }> =>
            Boolean(event && event.type === 'placement-group-waiting'),
          );
      }
      assert.ok(waiting.length >= 2, 'no repeated "Waiting for placement group" lines');
      assert.equal(waiting[0]!.gpusNeeded, 3);
      assert.equal(waiting[0]!.gpusRegistered, 2);
      assert.equal((await jobs.getJob(id))?.status, 'RUNNING');
    } finally {
      await jobs.stopJob(id);
      await jobs.waitForStatus(id, ['STOPPED', 'FAILED'], { timeoutMs: 60_000 });
    }
  });

  it("a wrong value fails the job with argparse's message and exit status 2 (unknown flags are ignored, as slime does)", async () => {
    const args = await trainArgs({ ...base, saveDir: path.join(root, 'never') });
    const { job, logs } = await finish(
      await submit('typo', [...args, '--rollout-batch-sise', '8', '--eval-temperature', 'warm']),
    );
    assert.equal(job.status, 'FAILED');
    assert.match(logs, /train\.py: error: argument --eval-temperature: invalid float value: 'warm'/);
    // the unknown flag is ignored: argparse's output never names it (Ray's own line quoting the entrypoint does)
    const trainerOutput = logs
      .split('\n')
      .filter((line) => !line.startsWith('Running entrypoint for job'))
      .join('\n');
    assert.doesNotMatch(trainerOutput, /rollout-batch-sise/);
    assert.equal(job.driverExitCode, 2);

    // Bad values are argparse errors too; a model flag that contradicts the checkpoint exits 1.
    const badValue = await run([
      python,
      trainScript,
      ...args.map((a, i) => (args[i - 1] === '--eps-clip' ? '1.5' : a)),
    ]);
    assert.equal(badValue.code, 2);
    assert.match(badValue.stderr, /--eps-clip must be in \[0, 1\)/);
    const mismatch = await run([
      python,
      trainScript,
      ...args.map((a, i) => (args[i - 1] === '--num-experts' ? '4' : a)),
    ]);
    assert.equal(mismatch.code, 1);
    assert.match(mismatch.stderr, /--num-experts 4 does not match the checkpoint \(8\)/);
  });
});
