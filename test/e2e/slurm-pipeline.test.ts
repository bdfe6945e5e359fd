// The tiny-local pipeline on a real local Slurm cluster (slurmctld, munged, one slurmd per node): one holder job
// allocates the 4 nodes and the spare, every program is a step of it (srun --overlap), and the control workers are
// real processes that the test kills. The holder job first waits in the queue (another job holds the nodes): the
// worker is SIGKILLed while it waits, and the next worker adopts the same job by name. During the conversion the
// worker is stopped with SIGTERM; the next one re-attaches. squeue never shows a second allocation, and the run's end
// releases it. Then a cancelled run and a failed run release theirs.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import type { ResultPromise } from 'execa';
import { execa } from 'execa';
import { startLocalCluster, type LocalCluster } from '../../src/local/cluster.js';
import { localSlurmUnavailable, startLocalSlurm, type LocalSlurm } from '../../src/local/slurm.js';
import { SlurmExecutor, gangMemberId } from '../../src/exec/index.js';
import { resolveSpecOrThrow, type Spec } from '../../src/spec/index.js';
import { statusQuery, trainingStatusQuery } from '../../workflows/definitions.js';
import { KeelClient, describeError } from '../../src/client/index.js';
import { keelPhase } from '../../src/search-attributes.js';
import { formatStatus } from '../../src/cli/commands/run.js';
import { startControlPlane, type ControlPlane } from '../support/control-plane.js';
import { eventually, eventuallyWhileRunning, tempDir } from '../support/pipeline.js';
import { repoRoot } from '../support/temporal.js';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.js';
import { modelCache, tinySpec } from '../support/tiny-pipeline.js';

const skip = localSlurmUnavailable();
if (skip) console.log(`# skipped: ${skip}`);
const portBase = 24700;
const grace = '5s';

describe('tiny-local pipeline on a local Slurm cluster', { skip, timeout: 1_800_000 }, () => {
  let root: string;
  let cluster: LocalCluster;
  let slurm: LocalSlurm;
  let plane: ControlPlane;
  let worker: ResultPromise | undefined;
  let temporal: { client: Client; close: () => Promise<void> };
  let hooks: WebhookReceiver;
  /** squeue watchers of the tests, stopped in after() whatever happened */
  const watchers: { stop: () => Promise<void> }[] = [];

  const squeue = async (args: string[]) =>
    (await execa('squeue', ['--noheader', ...args], { env: { ...process.env, SLURM_CONF: slurm.conf } })).stdout
      .split('\n')
      .filter(Boolean);
  /** Live jobs named after this run: "<id> <state>". */
  const holderJobs = (workflowId: string) => squeue([`--name=keel-${workflowId}`, '--format=%i %T']);

  before(async () => {
    root = await tempDir('keel-slurm-');
    cluster = await startLocalCluster({ root, repoRoot, nodes: 4, spares: 1, cacheDir: modelCache });
    slurm = await startLocalSlurm({ dir: join(root, 'slurm'), nodes: 5, gpusPerNode: 2 });
    hooks = await startWebhookReceiver();
    plane = await startControlPlane({
      root,
      workerEnv: { KEEL_HF_ENDPOINT: cluster.hubEndpoint, KEEL_TEST_SLURM_HOOK_URL: `${hooks.origin}/slurm` },
    });
    temporal = await plane.connect();
  });
  after(async () => {
    for (const w of watchers) await w.stop();
    worker?.kill('SIGKILL');
    await worker;
    await temporal?.close().catch(() => undefined);
    await slurm?.stop();
    await cluster?.stop();
    await plane?.stopServer();
    await hooks?.close();
  });

  function slurmSpec(overrides: Record<string, unknown>): Spec {
    return tinySpec(cluster, portBase, {
      ...overrides,
      cluster: {
        stateDir: join(root, 'nodes', '{node}'),
        executor: { kind: 'slurm', slurmConf: slurm.conf, releaseGrace: grace },
        ...(overrides.cluster as object),
      },
    });
  }

  /** A training of `numRollout` rollouts of `rolloutSleepS` s each into `saveDir`, started on a live worker. */
  const startTraining = async (workflowId: string, saveDir: string, numRollout: number, rolloutSleepS: string) => {
    if (worker === undefined || worker.exitCode !== null || worker.signalCode !== null) worker = plane.startWorker();
    const spec = slurmSpec({
      name: 'slurm-e2e',
      model: { saveDir },
      rollout: { numRollout },
      rayHead: { jobEnv: { TINY_ROLLOUT_SLEEP_S: rolloutSleepS } },
    });
    const handle = await temporal.client.workflow.start('pipeline', {
      taskQueue: plane.taskQueue,
      workflowId,
      args: [spec],
    });
    return { spec, handle };
  };

  /** SIGTERM, as a service manager stops it. */
  const terminate = async (running: ResultPromise): Promise<string> => {
    running.kill('SIGTERM');
    const result = await Promise.race([running, new Promise<undefined>((r) => setTimeout(() => r(undefined), 60_000))]);
    assert.ok(result, 'the worker exited within a minute of SIGTERM');
    return result.signal ? `died of ${result.signal}` : `exited with ${result.exitCode}`;
  };

  it('one allocation held across a SIGKILLed and a SIGTERMed worker, every rank a step of it, released at the end', async () => {
    const workflowId = 'slurm-e2e';
    const spec = slurmSpec({
      name: 'slurm-e2e',
      model: { saveDir: 'save-slurm/' },
      cluster: {
        env: { TINY_CONVERT_SLEEP_S: '10' },
        executor: { kind: 'slurm', slurmConf: slurm.conf, releaseGrace: grace, notifyPendingAfter: '4s' },
      },
      notify: { webhooks: [{ urlEnv: 'KEEL_TEST_SLURM_HOOK_URL', format: 'json' }] },
    });
    // Another job holds every node: the run's holder job waits in the queue (Slurm's reason: Resources).
    const blocker = (
      await execa('sbatch', ['--parsable', '--nodes=5', '--output=/dev/null', '--wrap=exec sleep 600'], {
        env: { ...process.env, SLURM_CONF: slurm.conf },
      })
    ).stdout.trim();
    await eventually(
      async () => (await squeue([`--jobs=${blocker}`, '--format=%T']))[0] === 'RUNNING' || undefined,
      30_000,
      'the blocker running',
    );

    const seen = new Set<string>();
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        for (const line of await holderJobs(workflowId).catch(() => [])) seen.add(line.split(' ')[0]!);
        await new Promise((r) => setTimeout(r, 500));
      }
    })();
    watchers.push({
      stop: async () => {
        watching = false;
        await watcher;
      },
    });

    worker = plane.startWorker();
    const handle = await temporal.client.workflow.start('pipeline', {
      taskQueue: plane.taskQueue,
      workflowId,
      args: [spec],
    });
    const pending = await eventually(
      async () => {
        const status = await handle.query(statusQuery).catch(() => undefined);
        const jobs = await holderJobs(workflowId);
        return status?.allocation?.state === 'allocating' && jobs.length === 1 && jobs[0]!.endsWith('PENDING')
          ? jobs[0]!.split(' ')[0]
          : undefined;
      },
      60_000,
      'the holder job pending',
    );
    // The wait shows: in the Web UI's list (KeelPhase), in `keel status` with Slurm's reason, and, past
    // notifyPendingAfter, as a notification.
    const phase = (await handle.describe()).typedSearchAttributes.get(keelPhase);
    assert.equal(phase, 'allocating', 'KeelPhase while the allocation waits');
    const keel = await KeelClient.connect({ address: `127.0.0.1:${plane.port}`, taskQueue: plane.taskQueue });
    const waiting = await eventually(
      async () => {
        const a = (await keel.status(workflowId)).pipeline?.allocation;
        return a?.jobState === 'PENDING' && a.pendingReason === 'Resources' ? a : undefined;
      },
      30_000,
      "keel status to show the job pending with Slurm's reason",
    ).finally(() => keel.close());
    assert.equal(waiting.jobId, pending);
    const shownWaiting = formatStatus({
      workflowId,
      runStatus: 'RUNNING',
      pipeline: { allocation: waiting },
    } as Parameters<typeof formatStatus>[0]);
    assert.match(
      shownWaiting,
      new RegExp(
        `slurm +job ${pending} \\(keel-${workflowId}\\) allocating, PENDING for [0-9.]+ s in the queue \\(Resources\\)`,
      ),
    );
    const announced = await eventually(
      async () => hooks.posts.find((p) => p.body.kind === 'allocation-pending'),
      60_000,
      'the allocation-pending notification',
    );
    assert.equal(announced.path, '/slurm');
    assert.deepEqual(
      { jobId: announced.body.jobId, state: announced.body.state, reason: announced.body.reason },
      { jobId: pending, state: 'PENDING', reason: 'Resources' },
    );
    assert.match(
      String(announced.body.text),
      /waited 4 s for its allocation; Slurm job \d+ \(keel-slurm-e2e\) is PENDING: Resources/,
    );
    // 1. SIGKILL the worker while the allocation waits; the next worker's retry must adopt the job, not submit one.
    worker.kill('SIGKILL');
    await worker;
    worker = plane.startWorker();
    await new Promise((r) => setTimeout(r, 3000));
    await execa('scancel', [blocker], { env: { ...process.env, SLURM_CONF: slurm.conf } });

    // 2. The conversion runs on the allocation's 4 nodes: each rank a step of the holder job on its node.
    const executor = new SlurmExecutor({
      stateDir: (n) => join(root, 'nodes', n.name ?? n.host),
      jobId: pending!,
      slurmConf: slurm.conf,
    });
    const ranks = [0, 1, 2, 3].map((rank) => ({
      node: { host: `127.0.1.${rank + 1}`, name: `n${rank + 1}` },
      id: gangMemberId(`${workflowId}/convert`, rank),
    }));
    const before = await eventuallyWhileRunning(
      handle,
      async () => {
        const statuses = await Promise.all(
          ranks.map(({ node, id }) => executor.status(node, id).catch(() => undefined)),
        );
        return statuses.every((s) => s?.state === 'running') ? statuses : undefined;
      },
      600_000,
      'the conversion running on every node',
    );
    for (const [rank, record] of before.entries()) {
      const environ = (await readFile(`/proc/${record!.pid}/environ`, 'utf8')).split('\0');
      assert.ok(environ.includes(`SLURM_JOB_ID=${pending}`), `rank ${rank} runs in job ${pending}`);
      assert.ok(environ.includes(`SLURMD_NODENAME=n${rank + 1}`), `rank ${rank} runs as a step on n${rank + 1}`);
    }
    const stepsDuringConvert = await squeue(['--steps', `--jobs=${pending}`, '--format=%i %N']);
    for (const node of ['n1', 'n2', 'n3', 'n4']) {
      assert.ok(
        stepsDuringConvert.some((s) => s.endsWith(` ${node}`)),
        `a step on ${node}: ${stepsDuringConvert.join('; ')}`,
      );
    }
    // 3. SIGTERM the worker during the conversion; the next one re-attaches.
    const terminated = await terminate(worker);
    worker = plane.startWorker();

    // Ray's head and workers are blocking steps of the allocation, one on each node.
    await eventuallyWhileRunning(
      handle,
      async () => {
        const t = await temporal.client.workflow
          .getHandle(`${workflowId}-training`)
          .query(trainingStatusQuery)
          .catch(() => undefined);
        if (!t?.jobId) return undefined;
        const steps = await squeue(['--steps', `--jobs=${pending}`, '--format=%i %N']);
        return ['n1', 'n2', 'n3', 'n4'].every((n) => steps.some((s) => s.endsWith(` ${n}`))) ? steps : undefined;
      },
      600_000,
      'training running with a step on every node',
    );

    await handle.result().catch((e: unknown) => assert.fail(`run failed: ${describeError(e)}`));
    watching = false;
    await watcher;
    assert.deepEqual([...seen], [pending], 'squeue showed one holder job, never a second');
    const status = await handle.query(statusQuery);
    for (const step of status.steps) assert.equal(step.state, 'succeeded', `${step.id}: ${step.reason}`);
    assert.equal(status.steps.find((s) => s.id === 'convert')!.attempts, 1, 'the conversion ran in one attempt');
    const allocation = status.allocation!;
    assert.equal(allocation.jobId, pending);
    assert.equal(allocation.adopted, true, 'the retried allocation adopted the job by its name');
    assert.ok((allocation.pendingMs ?? 0) > 0, 'the allocation waited in the queue');
    assert.deepEqual(
      allocation.nodes,
      [1, 2, 3, 4, 5].map((i) => ({ name: `n${i}`, address: `127.0.1.${i}` })),
      'node names and addresses from Slurm',
    );
    assert.equal(allocation.state, 'released');
    assert.deepEqual(await holderJobs(workflowId), [], 'the allocation is released when the run ends');
    const shown = formatStatus({ workflowId, runStatus: 'COMPLETED', pipeline: status } as Parameters<
      typeof formatStatus
    >[0]);
    assert.match(shown, new RegExp(`slurm +job ${pending} \\(keel-${workflowId}\\) released, adopted`));
    assert.match(shown, /nodes n1 127\.0\.1\.1, n2 127\.0\.1\.2, n3 127\.0\.1\.3, n4 127\.0\.1\.4, n5 127\.0\.1\.5/);
    const training = await temporal.client.workflow.getHandle(`${workflowId}-training`).query(trainingStatusQuery);
    assert.equal(training.checkpoints.at(-1)?.iteration, 5);
    console.log(`  ${shown.split('\n').slice(0, 3).join('\n  ')}\n  the SIGTERMed worker ${terminated}`);
  });

  it('cancel releases the allocation within the grace period plus 10 s; a failed and a terminated run release it too', async () => {
    // Training that would run for minutes, on the outputs the first test prepared.
    const workflowId = 'slurm-cancel';
    const { spec, handle } = await startTraining(workflowId, 'save-slurm/', 200, '2');
    const jobId = await eventuallyWhileRunning(
      handle,
      async () => {
        const t = await temporal.client.workflow
          .getHandle(`${workflowId}-training`)
          .query(trainingStatusQuery)
          .catch(() => undefined);
        const status = await handle.query(statusQuery).catch(() => undefined);
        return t?.jobId && (t.lastRollout ?? -1) >= 6 ? status?.allocation?.jobId : undefined;
      },
      600_000,
      'training running again',
    );
    const cancelledAt = Date.now();
    await handle.cancel();
    let releasingAt: number | undefined;
    const goneAt = await eventually(
      async () => {
        const state = (await handle.query(statusQuery).catch(() => undefined))?.allocation?.state;
        if (state === 'releasing' || state === 'released') releasingAt ??= Date.now();
        return (await holderJobs(workflowId)).length === 0 ? Date.now() : undefined;
      },
      120_000,
      'the allocation gone from squeue',
    );
    await handle.result().then(
      () => assert.fail('the cancelled run succeeded'),
      () => undefined,
    );
    const ended = await squeue([`--jobs=${jobId}`, '--states=all', '--format=%T']);
    assert.ok(['CANCELLED', 'COMPLETED', 'FAILED'].includes(ended[0]!), `the job ended: ${ended.join(' ')}`);
    const fromRelease = (goneAt - (releasingAt ?? cancelledAt)) / 1000;
    assert.ok(fromRelease <= 5 + 10, `gone ${fromRelease.toFixed(1)} s after the release began (grace 5 s + 10 s)`);
    console.log(
      `  cancel: gone from squeue ${((goneAt - cancelledAt) / 1000).toFixed(1)} s after the cancel request, ${fromRelease.toFixed(1)} s after the release began`,
    );

    // A run that fails releases its allocation too.
    const failing = resolveSpecOrThrow({
      ...JSON.parse(JSON.stringify(slurmSpec({ name: 'slurm-fails' }))),
      steps: { fails: { kind: 'command', argv: ['sh', '-c', 'exit 3'] } },
      policies: { ...spec.policies, maxAttempts: 1 },
    });
    const failed = await temporal.client.workflow.start('pipeline', {
      taskQueue: plane.taskQueue,
      workflowId: 'slurm-fails',
      args: [failing],
    });
    await failed.result().then(
      () => assert.fail('the failing run succeeded'),
      () => undefined,
    );
    const failedStatus = await failed.query(statusQuery);
    assert.equal(failedStatus.steps[0]?.state, 'failed');
    assert.ok(failedStatus.allocation?.jobId, 'it held an allocation');
    assert.equal(failedStatus.allocation?.state, 'released');
    assert.deepEqual(await holderJobs('slurm-fails'), [], 'the failed run released its allocation');

    // A terminated run runs no code of its own: its guard child, cancelled by Temporal as the run closes, releases it.
    const terminated = await temporal.client.workflow.start('pipeline', {
      taskQueue: plane.taskQueue,
      workflowId: 'slurm-terminated',
      // the cancelled run's long training: the run must still be in it when it is terminated
      args: [spec],
    });
    const heldJob = await eventuallyWhileRunning(
      terminated,
      async () => {
        const allocation = (await terminated.query(statusQuery).catch(() => undefined))?.allocation;
        if (allocation?.state !== 'held' || !allocation.jobId) return undefined;
        const guard = await temporal.client.workflow
          .getHandle(`slurm-terminated-slurm-${allocation.jobId}`)
          .describe()
          .catch(() => undefined);
        return guard?.status.name === 'RUNNING' ? allocation.jobId : undefined;
      },
      120_000,
      'the allocation held and its guard running',
    );
    const terminatedAt = Date.now();
    await terminated.terminate('the e2e test terminates the run');
    const releasedAt = await eventually(
      async () => ((await holderJobs('slurm-terminated')).length === 0 ? Date.now() : undefined),
      120_000,
      'the terminated run released its allocation',
    );
    const afterTerminate = (releasedAt - terminatedAt) / 1000;
    console.log(`  terminate: gone from squeue ${afterTerminate.toFixed(1)} s after the terminate request`);
    const ended2 = await squeue([`--jobs=${heldJob}`, '--states=all', '--format=%T']);
    // scancel --signal=TERM --full ends the batch script by TERM: Slurm may record FAILED rather than CANCELLED
    assert.ok(['CANCELLED', 'COMPLETED', 'FAILED'].includes(ended2[0]!), `the job ended: ${ended2.join(' ')}`);
  });

  // Rollouts of 4 s: after the kill at the first checkpoint (rollout 2), 12 rollouts (about 50 s) are left, more than
  // Slurm takes to mark the node DOWN (its SlurmdTimeout and ping cycle, about 15 s here) plus keel's 10 s check.
  it('a slurmd killed mid-training: Slurm marks its node DOWN, the spare takes its place, training resumes at tracker + 1', async () => {
    const workflowId = 'slurm-node';
    const { spec, handle } = await startTraining(workflowId, 'save-slurm-node/', 15, '4');
    const training = temporal.client.workflow.getHandle(`${workflowId}-training`);
    const jobId = await eventuallyWhileRunning(
      handle,
      async () => {
        const t = await training.query(trainingStatusQuery).catch(() => undefined);
        const status = await handle.query(statusQuery).catch(() => undefined);
        return (t?.checkpoints.length ?? 0) >= 1 ? status?.allocation?.jobId : undefined;
      },
      600_000,
      'a checkpoint',
    );
    // n2's slurmd is killed: Slurm marks the node DOWN (SlurmdTimeout) and drops it from the job, and keel reads that.
    const crashedAt = Date.now();
    await slurm.killSlurmd('n2');
    await eventuallyWhileRunning(
      handle,
      async () =>
        ((await training.query(trainingStatusQuery).catch(() => undefined))?.failures.length ?? 0) >= 1 || undefined,
      120_000,
      'the loss noticed',
    );
    // The rest of the node goes too (a node whose slurmd is gone is not one to run on): its steps' processes.
    assert.ok((await slurm.crashNode('n2')).length > 0, 'the node ran steps of the run');
    await handle.result().catch((e: unknown) => assert.fail(`run failed: ${describeError(e)}`));
    const t = await training.query(trainingStatusQuery);
    console.log(`  failures: ${JSON.stringify(t.failures)}`);
    assert.equal(t.failures.length, 1, JSON.stringify(t.failures));
    const loss = t.failures[0]!;
    assert.equal(loss.kind, 'node-lost', loss.message);
    assert.match(loss.message, /Slurm: n2 DOWN\*? \(Not responding\), no longer in job/, 'detected from Slurm');
    assert.deepEqual(loss.restartedOn, ['n5'], 'Ray restarted on the spare only');
    assert.ok(t.activeNodes?.includes('n5') && !t.activeNodes.includes('n2'), `active: ${t.activeNodes?.join(', ')}`);
    assert.ok(
      (loss.lastRollout ?? 0) - (loss.tracker ?? 0) <= spec.ckpt.saveInterval - 1,
      `lost ${loss.lastRollout! - loss.tracker!} rollouts (save interval ${spec.ckpt.saveInterval})`,
    );
    assert.equal(t.checkpoints.at(-1)?.iteration, spec.rollout.numRollout - 1);
    // The same allocation, without n2; no second holder job.
    const status = await handle.query(statusQuery);
    assert.equal(status.allocation?.jobId, jobId);
    assert.equal(status.allocation?.state, 'released');
    assert.deepEqual(await holderJobs(workflowId), []);
    const detected = (Date.parse(loss.detectedAt!) - crashedAt) / 1000;
    console.log(
      `  node lost: detected ${detected.toFixed(1)} s after the crash (${loss.message}); resumed from ${loss.tracker} after rollout ${loss.lastRollout}; heal ${loss.heal} on ${loss.restartedOn?.join(', ')}`,
    );
    await slurm.reviveNode('n2');
  });
});
