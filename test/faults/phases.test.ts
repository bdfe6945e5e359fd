// R1's timeline, scaled down, under the real keel: phases longer than hang.rollout that are not hangs. A start-up with
// its first eval and a checkpoint deletion, each longer than hang.rollout, restart nothing; a crash during a deletion
// is found as fast as any crash (retention runs beside supervision, never instead of it); a worker down for longer
// than hang.rollout while the trainer logs on restarts nothing (the next worker catches up, the gap is not idle time).
// One run: hang.rollout 8 s; a start-up of 12 s; checkpoints padded with as many files as take 1.5 x hang.rollout to
// delete (measured first, with keel's own deleter). Deleting is as slow as on a parallel file system: the worker's
// `rm` is a stand-in that paces GNU rm's unlinks (test/support/slow-storage/rm); on this machine's disk, GNU rm deletes
// the files a test can write in a second or two.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import type { Worker } from '@temporalio/worker';
import { trainingStatusQuery, type TrainingStatus } from '../../workflows/definitions.js';
import { modelPaths } from '../../src/spec/paths.js';
import { RayJobsClient } from '../../src/cluster/ray-jobs.js';
import { dashboardUrlFor } from '../../activities/cluster.js';
import { describeError } from '../../src/client/index.js';
import { removeTreeIn } from '../../src/storage/index.js';
import { createTestWorker, eventually, tempDir } from '../support/pipeline.js';
import { repoRoot } from '../support/temporal.js';
import { startTinyRig, trainerPids, type TinyRig } from '../support/tiny-pipeline.js';

const hangRolloutMs = 8000;

describe('phases longer than hang.rollout on the local cluster', { timeout: 900_000 }, () => {
  let rig: TinyRig;
  let files = 0;
  let replacement: { worker: Worker; running: Promise<void> } | undefined;
  const path = process.env.PATH;
  before(async () => {
    process.env.PATH = [join(repoRoot, 'test', 'support', 'slow-storage'), path].join(delimiter);
    rig = await startTinyRig({ nodes: 4, portBase: 27300 });
    files = await filesDeletedIn(1.5 * hangRolloutMs);
  });
  after(async () => {
    if (replacement?.worker.getState() === 'RUNNING') replacement.worker.shutdown();
    await replacement?.running.catch(() => undefined);
    await rig?.stop();
    process.env.PATH = path;
  });

  const spec = (name: string, jobEnv: Record<string, string>, numRollout: number) =>
    rig.spec({
      name,
      model: { saveDir: `save-${name}/` },
      rollout: { numRollout },
      ckpt: { saveInterval: 2 },
      eval: { evalInterval: 2 },
      policies: {
        hang: { startup: '2m', rollout: `${hangRolloutMs / 1000}s`, checkpointSave: '60s' },
        retention: { keepLast: 1, keepBest: 0 },
      },
      rayHead: { jobEnv: { TINY_ROLLOUT_SLEEP_S: '1', ...jobEnv } },
    });

  it('a long start-up, long deletions and a worker down restart nothing; a crash during a deletion is found at once', async () => {
    const s = spec('phases', { TINY_STARTUP_SLEEP_S: '12', TINY_SAVE_FILES: String(files) }, 8);
    const handle = await rig.env.client.workflow.start('pipeline', {
      taskQueue: rig.taskQueue,
      workflowId: 'phases',
      args: [s],
    });
    const training = rig.env.client.workflow.getHandle('phases-training');
    const status = () => training.query(trainingStatusQuery);
    const retentionPending = async () =>
      ((await training.describe()).raw.pendingActivities ?? []).some((a) => a.activityType?.name === 'applyRetention');

    // 1. Crash the trainer while the first deletion runs (the checkpoint at rollout 3 made checkpoint 1 doomed).
    const killedAt = await eventually(
      async () => {
        const now: TrainingStatus | undefined = await status().catch(() => undefined);
        if (!now || !now.checkpoints.some((c) => c.iteration >= 3) || !(await retentionPending())) return;
        assert.deepEqual(now.failures, [], 'no restart before the injected crash: the start-up is not a hang');
        const head = now.activeNodes?.[0] ?? rig.cluster.nodes[0]!.host;
        const node = rig.cluster.nodes.find((n) => n.host === head)!;
        const pids = await trainerPids(node.stateDir);
        assert.ok(pids.length >= 1, 'found the trainer');
        for (const pid of pids) process.kill(pid, 'SIGKILL');
        return Date.now();
      },
      420_000,
      'a deletion running after the checkpoint at rollout 3',
    );
    const detected = await eventually(async () => (await status()).failures[0], 120_000, 'the crash detected');
    assert.equal(detected.kind, 'job-crashed', JSON.stringify(detected));
    const detectedAt = Date.parse(detected.detectedAt ?? detected.at);
    // The usual detection time of a crash: a poll (2 s) and the job's status from Ray.
    assert.ok(detectedAt - killedAt < 20_000, `detected ${detectedAt - killedAt} ms after the crash`);

    // 2. Once the resumed job trains again, no worker for three times hang.rollout while the trainer logs on.
    const resumed = await eventually(
      async () => {
        const now = await status();
        // recoveredAt: supervision saw the resubmitted job's first rollout
        return now.failures[0]?.recoveredAt && now.jobId ? now : undefined;
      },
      300_000,
      'the first rollout of the resumed job',
    );
    const jobs = new RayJobsClient({
      url: dashboardUrlFor(s, {
        host: resumed.activeNodes?.[0] ?? rig.cluster.nodes[0]!.host,
        gpus: s.cluster.gpusPerNode,
      }),
      timeoutMs: 10_000,
    });
    const workLines = async () =>
      ((await jobs.getLogs(resumed.jobId!)).text.match(/\b(perf|step) \d+: \{/g) ?? []).length;
    const linesBefore = await workLines();
    rig.worker.shutdown();
    await rig.running.catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 3 * hangRolloutMs));
    const linesAfter = await workLines();
    assert.ok(
      linesAfter > linesBefore,
      `the trainer logged on while no worker ran: ${linesBefore} -> ${linesAfter} lines`,
    );
    const worker = await createTestWorker(rig.env, rig.taskQueue);
    replacement = { worker, running: worker.run() };

    await handle.result().catch((e: unknown) => assert.fail(`run failed: ${describeError(e)}`));
    const end = await status();
    assert.equal(end.failures.length, 1, `one failure, the injected crash: ${JSON.stringify(end.failures)}`);
    assert.equal(end.restarts, 1);
    assert.equal(end.submissions, 2);
    assert.equal(end.checkpoints.at(-1)?.iteration, 7);

    // Deletions took longer than hang.rollout, and one ran on after the crash was detected.
    const retentions = await retentionTimes(training);
    const took = retentions.map((r) => r.end - r.start);
    assert.ok(took.filter((ms) => ms > hangRolloutMs).length >= 2, `deletions took ${took.join(', ')} ms`);
    assert.ok(
      retentions.some((r) => r.start < detectedAt && r.end > detectedAt),
      `a deletion was running when the crash was detected: ${JSON.stringify(retentions)}`,
    );
    const left = (await readdir(modelPaths(s).save)).filter((n) => n.startsWith('iter_'));
    assert.deepEqual(left, ['iter_0000007'], 'retention kept the last checkpoint only');
    console.log(
      `  ${files} files a checkpoint; deletions took ${took.join(', ')} ms; ` +
        `the crash was detected in ${detectedAt - killedAt} ms`,
    );
  });
});

/** Start and end (ms) of every completed applyRetention of a training workflow, from its history. */
async function retentionTimes(
  handle: ReturnType<TinyRig['env']['client']['workflow']['getHandle']>,
): Promise<{ start: number; end: number }[]> {
  const history = await handle.fetchHistory();
  const ms = (t: { seconds?: unknown; nanos?: number | null } | null | undefined) =>
    Number(t?.seconds ?? 0) * 1000 + Math.floor((t?.nanos ?? 0) / 1e6);
  const scheduled = new Map<string, boolean>();
  const started = new Map<string, number>();
  const out: { start: number; end: number }[] = [];
  for (const e of history.events ?? []) {
    const id = String(e.eventId);
    if (e.activityTaskScheduledEventAttributes?.activityType?.name === 'applyRetention') scheduled.set(id, true);
    const st = e.activityTaskStartedEventAttributes;
    if (st && scheduled.has(String(st.scheduledEventId))) started.set(String(st.scheduledEventId), ms(e.eventTime));
    const done = e.activityTaskCompletedEventAttributes;
    if (done && started.has(String(done.scheduledEventId)))
      out.push({ start: started.get(String(done.scheduledEventId))!, end: ms(e.eventTime) });
  }
  return out;
}

/**
 * How many files keel's deleter (retention's, src/storage) removes in `targetMs` here: measured on a sample, so that the
 * deletions of the test take longer than hang.rollout on a fast machine and a slow one alike.
 */
async function filesDeletedIn(targetMs: number): Promise<number> {
  const dir = await tempDir('keel-delete-rate-');
  const sample = 300;
  await mkdir(join(dir, 'shards'));
  for (let i = 0; i < sample; i += 100)
    await Promise.all(Array.from({ length: 100 }, (_, j) => writeFile(join(dir, 'shards', `${i + j}`), '')));
  const started = performance.now();
  const removed = await removeTreeIn(dir, 'shards');
  const perFile = (performance.now() - started) / removed;
  await rm(dir, { recursive: true, force: true });
  return Math.min(20_000, Math.max(sample, Math.ceil(targetMs / perFile)));
}
