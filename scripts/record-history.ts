// Records workflow histories of real runs for the replay test (test/workflow/replay.test.ts), which replays every
// history in test/histories against the current workflow code. A history, once committed, is never re-recorded:
// this script refuses to overwrite one. Record a new set when workflow behaviour changes (under a new patch id):
//
//   npx tsx scripts/record-history.ts <label> [lost-node|steering|slurm]
//
// writes test/histories/<label>-*.binpb from one scenario on a tiny-local cluster (4 nodes and a spare, ssh off).
// lost-node (the default): a pipeline whose training loses a node after its first checkpoint (a restart, a heal that
// takes the spare) and continues as new (the server suggests it after 40 events), then a retrain of 3 more rollouts.
// steering: three runs steered by Updates -- paused right after its start (held until it is prepared), resumed, and
// stopped after a checkpoint; cancelled while it trains; paused by its crash-loop guard (a job that crashes at once,
// until a flag file is gone), then resumed. The runs post their notifications (every checkpoint and eval too) to a
// loopback webhook receiver.
// slurm: a run on a local Slurm cluster (Debian's slurmctld and slurmd, as `keel local up --slurm`) whose holder job
// first waits in the queue behind another job, long enough to be announced (`allocation-pending`), then runs the
// tiny pipeline and releases its allocation: the pipeline, its training and its allocation's guard.
import { existsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import proto from '@temporalio/proto';
import type { Client } from '@temporalio/client';
import { execa } from 'execa';
import { localSlurmUnavailable, startLocalSlurm } from '../src/local/slurm.js';
import {
  cancelUpdate,
  pauseUpdate,
  resumeUpdate,
  statusQuery,
  stopAfterCheckpointUpdate,
  trainingStatusQuery,
} from '../workflows/definitions.js';
import { scrubHistory } from './history-scrub.js';
import { eventually, tempDir } from '../test/support/pipeline.js';
import { repoRoot } from '../test/support/temporal.js';
import { startTinyRig } from '../test/support/tiny-pipeline.js';
import { startWebhookReceiver } from '../test/support/webhook-receiver.js';

const label = process.argv[2];
const scenario = process.argv[3] ?? 'lost-node';
if (!label || !/^[a-z0-9][a-z0-9.-]*$/.test(label) || !['lost-node', 'steering', 'slurm'].includes(scenario)) {
  console.error(
    'usage: npx tsx scripts/record-history.ts <label> [lost-node|steering|slurm]   (lowercase, e.g. keel-0.2)',
  );
  process.exit(2);
}
const dir = join(repoRoot, 'test', 'histories');
const fileFor = (name: string) => join(dir, `${label}-${name}.binpb`);
// the workflow id each history ran under, which its replay needs (a pipeline names its training child after it): a
// file of the label's own, as committed files are never edited
const idsFile = join(dir, `${label}.workflow-ids.json`);
if (existsSync(idsFile)) throw new Error(`${idsFile} exists: histories are never re-recorded (choose a new label)`);
const ids: Record<string, string> = {};

/** Every run of a workflow id (continue-as-new makes several), oldest first. */
async function runsOf(client: Client, workflowId: string): Promise<string[]> {
  const runs: { runId: string; start: number }[] = [];
  for await (const w of client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) {
    runs.push({ runId: w.runId, start: w.startTime.getTime() });
  }
  return runs.sort((a, b) => a.start - b.start).map((r) => r.runId);
}

async function save(client: Client, workflowId: string, name: string): Promise<void> {
  const runs = await runsOf(client, workflowId);
  for (const [i, runId] of runs.entries()) {
    const file = fileFor(runs.length > 1 ? `${name}-run${i + 1}` : name);
    if (existsSync(file)) throw new Error(`${file} exists: histories are never re-recorded (choose a new label)`);
    const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
    const scrubbed = scrubHistory(history, repoRoot);
    await writeFile(file, proto.temporal.api.history.v1.History.encode(scrubbed).finish());
    ids[basename(file)] = workflowId;
    await writeFile(idsFile, `${JSON.stringify(ids, null, 2)}\n`);
    console.log(`wrote ${file} (${history.events?.length} events)`);
  }
}

const receiver = await startWebhookReceiver();
process.env.KEEL_RECORDING_WEBHOOK_URL = `${receiver.origin}/hooks/recording`;
const rig = await startTinyRig({
  nodes: 4,
  spares: 1,
  portBase: 27100,
  serverArgs: scenario === 'lost-node' ? ['--dynamic-config-value', 'limit.historyCount.suggestContinueAsNew=40'] : [],
});
const notify = { webhooks: [{ urlEnv: 'KEEL_RECORDING_WEBHOOK_URL', format: 'json', checkpoints: true, evals: true }] };
try {
  if (scenario === 'steering') await steering(rig.env.client);
  else if (scenario === 'slurm') await slurmRun(rig.env.client);
  else await lostNode();
} finally {
  await rig.stop();
  await receiver.close();
}

async function lostNode(): Promise<void> {
  const client = rig.env.client;
  const spec = rig.spec({
    name: 'history',
    model: { saveDir: 'save-history/' },
    rollout: { numRollout: 9 },
    rayHead: { jobEnv: { TINY_ROLLOUT_SLEEP_S: '1' } },
    notify,
  });
  const workflowId = 'keel-history';
  const handle = await client.workflow.start('pipeline', { taskQueue: rig.taskQueue, workflowId, args: [spec] });
  const training = client.workflow.getHandle(`${workflowId}-training`);
  await eventually(
    async () => ((await training.query(trainingStatusQuery).catch(() => undefined))?.checkpoints.length ?? 0) >= 1,
    900_000,
    'the first checkpoint',
  );
  await rig.cluster.killNode(2);
  await handle.result();
  const status = await training.query(trainingStatusQuery);
  if (status.restarts < 1) throw new Error('the scenario needs a restart; none happened');
  console.log(`heals: ${status.failures.map((f) => f.heal ?? '-').join(', ')}`);
  console.log(`notifications: ${receiver.posts.map((p) => p.body.kind).join(', ')}`);
  if (receiver.posts.length === 0) throw new Error('the scenario needs notifications; none was posted');
  await save(client, workflowId, 'pipeline');
  await save(client, `${workflowId}-training`, 'training');
  await rig.cluster.reviveNode(2);

  const retrainId = 'keel-history-retrain';
  await client.workflow.execute('retrain', {
    taskQueue: rig.taskQueue,
    workflowId: retrainId,
    args: [{ spec, rollouts: 3 }],
  });
  await save(client, retrainId, 'retrain');
  await save(client, `${retrainId}-pipeline`, 'retrain-pipeline');
  await save(client, `${retrainId}-pipeline-training`, 'retrain-training');
}

/** The training's status, once its workflow answers. */
function trainingOf(client: Client, workflowId: string) {
  return client.workflow
    .getHandle(`${workflowId}-training`)
    .query(trainingStatusQuery)
    .catch(() => undefined);
}

async function steering(client: Client): Promise<void> {
  // Updates: a pause sent right after the start, a resume, a stopAfterCheckpoint while training runs.
  const updates = 'keel-history-updates';
  const spec = (name: string, overrides: Record<string, unknown> = {}) =>
    rig.spec({ name, model: { saveDir: `save-${name}/` }, notify, ...overrides });
  const steered = await client.workflow.start('pipeline', {
    taskQueue: rig.taskQueue,
    workflowId: updates,
    args: [spec('updates', { rollout: { numRollout: 9 }, rayHead: { jobEnv: { TINY_ROLLOUT_SLEEP_S: '1' } } })],
  });
  console.log(`pause: ${(await steered.executeUpdate(pauseUpdate)).message}`);
  await new Promise((r) => setTimeout(r, 2000));
  console.log(`resume: ${(await steered.executeUpdate(resumeUpdate)).message}`);
  await eventually(
    async () => (await trainingOf(client, updates))?.phase === 'running' || undefined,
    900_000,
    'training',
  );
  console.log(`stopAfterCheckpoint: ${(await steered.executeUpdate(stopAfterCheckpointUpdate)).message}`);
  await steered.result();
  const stopped = await trainingOf(client, updates);
  if (stopped?.phase !== 'stopped') throw new Error(`training should have stopped early: ${stopped?.phase}`);
  await save(client, updates, 'updates-pipeline');
  await save(client, `${updates}-training`, 'updates-training');

  // A cancel while training runs: the run ends CANCELED.
  const cancel = 'keel-history-cancel';
  const cancelled = await client.workflow.start('pipeline', {
    taskQueue: rig.taskQueue,
    workflowId: cancel,
    args: [spec('cancel', { rollout: { numRollout: 30 }, rayHead: { jobEnv: { TINY_ROLLOUT_SLEEP_S: '1' } } })],
  });
  await eventually(
    async () => ((await trainingOf(client, cancel))?.lastRollout ?? -1) >= 1 || undefined,
    900_000,
    'training past its first rollout',
  );
  const answer = await cancelled.executeUpdate(cancelUpdate, { args: [{ reason: 'recording a cancel' }] });
  console.log(`cancel: ${answer.message}`);
  const ended = await cancelled.result().then(
    () => 'COMPLETED',
    () => undefined,
  );
  const status = (await cancelled.describe()).status.name;
  if (ended || status !== 'CANCELLED') throw new Error(`the run should have ended CANCELED: ${status}`);
  await save(client, cancel, 'cancel-pipeline');
  await save(client, `${cancel}-training`, 'cancel-training');

  // A crash loop: paused by its guard after 2 restarts, resumed once the cause is gone.
  const crashLoop = 'keel-history-crash-loop';
  const flag = join(rig.cluster.baseDir, 'crash-flag');
  await writeFile(flag, 'crash\n');
  const crashing = await client.workflow.start('pipeline', {
    taskQueue: rig.taskQueue,
    workflowId: crashLoop,
    args: [
      spec('crash-loop', {
        rayHead: { jobEnv: { TINY_CRASH_IF_EXISTS: flag } },
        policies: { crashLoop: { maxRestarts: 2, window: '1h' } },
      }),
    ],
  });
  await eventually(
    async () => (await trainingOf(client, crashLoop))?.phase === 'paused-crash-loop' || undefined,
    900_000,
    'the crash-loop pause',
  );
  await rm(flag);
  console.log(`resume: ${(await crashing.executeUpdate(resumeUpdate)).message}`);
  await crashing.result();
  await save(client, crashLoop, 'crash-loop-pipeline');
  await save(client, `${crashLoop}-training`, 'crash-loop-training');
  console.log(`notifications: ${receiver.posts.map((p) => p.body.kind).join(', ')}`);
}

async function slurmRun(client: Client): Promise<void> {
  const unavailable = localSlurmUnavailable();
  if (unavailable) throw new Error(`the slurm scenario needs a local Slurm: ${unavailable}`);
  const dir = await tempDir('keel-history-slurm-');
  const slurm = await startLocalSlurm({ dir: join(dir, 'slurm'), nodes: 5, gpusPerNode: 2 });
  const slurmEnv = { ...process.env, SLURM_CONF: slurm.conf };
  try {
    // another job holds every node: the run's holder job waits (Resources)
    const blocker = (
      await execa('sbatch', ['--parsable', '--nodes=5', '--output=/dev/null', '--wrap=exec sleep 600'], {
        env: slurmEnv,
      })
    ).stdout.trim();
    await eventually(
      async () =>
        (await execa('squeue', ['--noheader', `--jobs=${blocker}`, '--format=%T'], { env: slurmEnv })).stdout.trim() ===
          'RUNNING' || undefined,
      30_000,
      'the blocker running',
    );
    const workflowId = 'keel-history-slurm';
    const spec = rig.spec({
      name: 'slurm',
      model: { saveDir: 'save-slurm/' },
      rollout: { numRollout: 3 },
      cluster: {
        stateDir: join(dir, 'nodes', '{node}'),
        executor: { kind: 'slurm', slurmConf: slurm.conf, releaseGrace: '5s', notifyPendingAfter: '3s' },
      },
      notify,
    });
    const handle = await client.workflow.start('pipeline', { taskQueue: rig.taskQueue, workflowId, args: [spec] });
    await eventually(
      async () => receiver.posts.some((p) => p.body.kind === 'allocation-pending') || undefined,
      120_000,
      'the allocation-pending notification',
    );
    await execa('scancel', [blocker], { env: slurmEnv });
    await handle.result();
    const jobId = (await handle.query(statusQuery)).allocation?.jobId;
    if (!jobId) throw new Error('the run recorded no allocation');
    // the guard, cancelled as the pipeline closed, has released the job
    await client.workflow.getHandle(`${workflowId}-slurm-${jobId}`).result();
    console.log(`notifications: ${receiver.posts.map((p) => p.body.kind).join(', ')}`);
    await save(client, workflowId, 'slurm-pipeline');
    await save(client, `${workflowId}-training`, 'slurm-training');
    await save(client, `${workflowId}-slurm-${jobId}`, 'slurm-guard');
  } finally {
    await slurm.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
