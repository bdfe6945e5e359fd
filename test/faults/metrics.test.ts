// The control worker's Prometheus endpoint during a tiny-local run: the real `keel worker --metrics-port` in its own
// process (the Temporal runtime, and so the SDK's exporter, is process-wide), scraped once a second while the run
// trains and checkpoints, until an injected crash of the trainer (SIGKILL) is counted as a restart. Scaled down:
// rollouts of about a second, a checkpoint every 3, no wait for the recovery.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { KeelClient } from '../../src/client/index.js';
import { freePort } from '../../src/local/net.js';
import { trainingStatusQuery, type TrainingStatus } from '../../workflows/definitions.js';
import { eventually, tempDir, uniqueQueue } from '../support/pipeline.js';
import { repoRoot, workflowBundle } from '../support/temporal.js';
import { startTinyRig, trainerPids, type TinyRig } from '../support/tiny-pipeline.js';
import { parseExposition, sampleValue, type Sample } from '../support/prometheus.js';

interface Scrape {
  /** when the request was sent and the answer received (ms) */
  sentAt: number;
  receivedAt: number;
  samples: Sample[];
  body: string;
}

describe('worker metrics during a tiny-local run', { timeout: 900_000 }, () => {
  let rig: TinyRig;
  let worker: ResultPromise | undefined;
  let keel: KeelClient;
  let metricsUrl: string;
  let logFile: string;
  const taskQueue = uniqueQueue('keel-metrics');

  before(async () => {
    rig = await startTinyRig({ nodes: 4, spares: 1, portBase: 26700 });
    const dir = await tempDir('keel-metrics-');
    const bundlePath = join(dir, 'workflow-bundle.js');
    await writeFile(bundlePath, (await workflowBundle()).code);
    const port = await freePort('127.0.0.1');
    metricsUrl = `http://127.0.0.1:${port}/metrics`;
    logFile = join(dir, 'worker.log');
    worker = execa(
      'node',
      ['--import', 'tsx', 'src/cli/main.ts', 'worker', '--metrics-port', String(port), '--bundle', bundlePath],
      {
        cwd: repoRoot,
        env: { KEEL_TEMPORAL_ADDRESS: rig.env.address, KEEL_TASK_QUEUE: taskQueue, KEEL_LOG_LEVEL: 'info' },
        reject: false,
        forceKillAfterDelay: false,
        stdin: 'ignore',
        stdout: { file: logFile },
        stderr: { file: join(dir, 'worker.err.log') },
      },
    );
    keel = await KeelClient.connect({ address: rig.env.address, taskQueue });
  });
  after(async () => {
    worker?.kill('SIGTERM');
    await worker;
    await keel?.close();
    await rig?.stop();
  });

  async function scrape(): Promise<Scrape> {
    const sentAt = Date.now();
    const res = await fetch(metricsUrl, { signal: AbortSignal.timeout(20_000) });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const body = await res.text();
    return { sentAt, receivedAt: Date.now(), samples: parseExposition(body), body };
  }

  it('rollout advances, the checkpoint age resets at each checkpoint, restarts counts an injected crash', async () => {
    await eventually(
      async () => (await scrape().catch(() => undefined)) !== undefined || undefined,
      120_000,
      'metrics',
    );
    const spec = rig.spec({
      name: 'metrics',
      rollout: { numRollout: 15 },
      rayHead: { jobEnv: { TINY_ROLLOUT_SLEEP_S: '1' } },
    });
    const { workflowId: run } = await keel.start(spec);
    const pipeline = keel.client.workflow.getHandle(run);
    const training = keel.client.workflow.getHandle(`${run}-training`);
    const of = (s: Scrape, name: string, labels: Record<string, string> = {}) =>
      sampleValue(s.samples, name, { run, ...labels });

    // Scrape once a second; crash the trainer once the checkpoint at rollout 5 is recorded; stop once the restart is
    // counted (what follows -- heal, resubmit, resume -- is the training fault tests' business).
    const scrapes: Scrape[] = [];
    let crashedAt: number | undefined;
    const deadline = Date.now() + 600_000;
    for (;;) {
      assert.ok(Date.now() < deadline, 'the restart was never counted');
      const described = await pipeline.describe();
      assert.equal(described.status.name, 'RUNNING', 'the run ended before the crash was counted');
      const s = await scrape();
      scrapes.push(s);
      if (of(s, 'keel_training_restarts_total') === 1) break;
      if (crashedAt === undefined && (of(s, 'keel_training_last_checkpoint_rollout') ?? -1) >= 5) {
        const status: TrainingStatus = await training.query(trainingStatusQuery);
        const head = status.activeNodes?.[0] ?? rig.cluster.nodes[0]!.host;
        const node = [...rig.cluster.nodes, ...rig.cluster.spares].find((n) => n.host === head)!;
        const pids = await trainerPids(node.stateDir);
        assert.ok(pids.length >= 1, 'found the trainer');
        for (const pid of pids) process.kill(pid, 'SIGKILL');
        crashedAt = Date.now();
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
    const status: TrainingStatus = await training.query(trainingStatusQuery);
    assert.ok(crashedAt !== undefined, 'the crash was injected');
    assert.equal(status.restarts, 1, JSON.stringify(status.failures));
    assert.equal(status.failures[0]?.kind, 'job-crashed', JSON.stringify(status.failures));
    const seen = scrapes.filter((s) => of(s, 'keel_training_status_up') === 1);
    const before = seen.filter((s) => s.receivedAt < crashedAt!);
    const last = seen.at(-1)!;
    assert.ok(before.length >= 5, `${before.length} scrapes saw the training before the crash`);

    // The current rollout advances and never goes back; supervision's heartbeat is read (the progress age).
    const rollouts = seen.map((s) => of(s, 'keel_training_rollout')).filter((r) => r !== undefined);
    assert.ok(new Set(rollouts).size >= 2 && rollouts.at(-1)! >= 5, `rollouts seen: ${rollouts.join(' ')}`);
    for (let i = 1; i < rollouts.length; i++) assert.ok(rollouts[i]! >= rollouts[i - 1]!, rollouts.join(' '));
    assert.ok(
      before.some((s) => of(s, 'keel_training_last_progress_age_seconds') !== undefined),
      "the supervision's heartbeat was read",
    );
    assert.equal(of(last, 'keel_training_num_rollout'), 15);
    assert.equal(of(last, 'keel_training_save_interval_rollouts'), 3);

    // The checkpoint age is the time since keel recorded the checkpoint (before the first: since training started),
    // grows between checkpoints and drops at each new one.
    let resets = 0;
    for (let i = 0; i < seen.length; i++) {
      const s = seen[i]!;
      const ckpt = of(s, 'keel_training_last_checkpoint_rollout');
      const age = of(s, 'keel_training_last_checkpoint_age_seconds');
      assert.ok(age !== undefined && age >= 0);
      const recorded = status.checkpoints.find((c) => c.iteration === ckpt);
      if (recorded) {
        const since = Date.parse(recorded.at);
        const window = [(s.sentAt - since) / 1000 - 1, (s.receivedAt - since) / 1000 + 1];
        assert.ok(age >= window[0]! && age <= window[1]!, `age ${age} of ${ckpt}, expected in ${window.join('..')}`);
      }
      const prev = seen[i - 1];
      if (!prev) continue;
      const prevAge = of(prev, 'keel_training_last_checkpoint_age_seconds')!;
      const prevCkpt = of(prev, 'keel_training_last_checkpoint_rollout');
      if (ckpt === prevCkpt) assert.ok(age >= prevAge, `the age grows between checkpoints: ${prevAge} -> ${age}`);
      else if (ckpt !== undefined && (prevCkpt === undefined || ckpt > prevCkpt)) {
        assert.ok(age < prevAge, `the age drops at checkpoint ${ckpt}: ${prevAge} -> ${age}`);
        resets++;
      }
    }
    assert.ok(resets >= 2, `the age reset at ${resets} checkpoints`);

    // Restarts: 0 before the crash, 1 after it, with one job-crashed failure and the time it is costing.
    for (const s of before) assert.equal(of(s, 'keel_training_restarts_total'), 0);
    assert.equal(of(last, 'keel_training_restarts_total'), 1);
    assert.equal(of(last, 'keel_training_failures_total', { kind: 'job-crashed' }), 1);
    // Counted once the restart begins: healing (Ray kept, repaired or restarted), submitting, or running again.
    const lastPhase = last.samples.find((x) => x.name === 'keel_training_phase' && x.labels.run === run)?.labels.phase;
    assert.ok(['healing', 'waiting-for-nodes', 'submitting', 'running'].includes(lastPhase ?? ''), lastPhase);
    assert.equal(of(last, 'keel_training_submissions_total'), lastPhase === 'running' ? 2 : 1);
    const failure = status.failures[0]!;
    assert.equal(
      of(last, 'keel_training_rollouts_lost_total'),
      Math.max(0, (failure.lastRollout ?? -1) - (failure.tracker ?? -1)),
    );
    // The outage is open until the resumed job's first rollout: the time lost runs from the last progress before the
    // crash to the scrape (or to that first rollout, once supervision has seen it).
    const since = Date.parse(failure.lastProgressAt!);
    const lost = of(last, 'keel_training_lost_seconds')!;
    const upTo = (last.receivedAt - since) / 1000 + 1;
    assert.ok(lost > 0 && lost <= upTo, `lost ${lost}, at most ${upTo}`);
    if (lastPhase !== 'running') assert.ok(lost >= (last.sentAt - since) / 1000 - 1, `lost ${lost} while recovering`);
    const detection = (Date.parse(failure.detectedAt!) - since) / 1000;
    assert.equal(of(last, 'keel_training_recovery_seconds_total', { part: 'detection' }), detection);
    const phases = seen.flatMap((s) =>
      s.samples.filter((x) => x.name === 'keel_training_phase' && x.labels.run === run).map((x) => x.labels.phase),
    );
    assert.ok(phases.includes('running'), phases.join(' '));
    assert.equal(of(before.at(-1)!, 'keel_training_nodes', { state: 'healthy' }), 4);
    assert.equal(of(before.at(-1)!, 'keel_training_nodes', { state: 'spare' }), 1);
    assert.equal(of(before.at(-1)!, 'keel_training_nodes', { state: 'quarantined' }), 0);
    assert.ok((of(last, 'keel_training_last_eval_score') ?? -1) >= 0);
    assert.equal(of(last, 'keel_run_info', { preset: 'tiny-local' }), 1);
    assert.equal(of(last, 'keel_run_phase', { phase: 'running' }), 1);

    // The SDK's own metrics are in the same exposition; the whole is valid Prometheus text.
    assert.ok(
      (sampleValue(last.samples, 'temporal_num_pollers', { task_queue: taskQueue, poller_type: 'activity_task' }) ??
        0) > 0,
      'the SDK exporter is merged',
    );
    await assertParsesAsPrometheus(last.body);

    // A run that is no longer running leaves no series behind (terminated here: the cluster is torn down anyway).
    await training.terminate('the metrics test is done');
    await pipeline.terminate('the metrics test is done');
    await eventually(
      async () => {
        const s = await scrape();
        return s.samples.every((x) => x.labels.run !== run) || undefined;
      },
      30_000,
      'the ended run to leave the metrics',
    );

    // The SDK core's own log lines reach pino (forwarded), as JSON lines of the worker's log.
    const lines = (await readFile(logFile, 'utf8')).split('\n').filter((l) => l.startsWith('{'));
    const core = lines
      .map((l) => JSON.parse(l) as { sdkComponent?: string; name?: string })
      .filter((l) => l.sdkComponent === 'core');
    assert.ok(core.length >= 1 && core.every((l) => l.name === 'keel-worker'), 'core log lines forwarded to pino');
  });
});

/** The Prometheus Python client's parser (Ray ships it in the venv) reads the whole exposition. */
async function assertParsesAsPrometheus(body: string): Promise<void> {
  const code =
    'import sys\nfrom prometheus_client.parser import text_string_to_metric_families as parse\n' +
    'families = list(parse(sys.stdin.read()))\nnames = [f.name for f in families]\n' +
    'assert len(names) == len(set(names)), "a metric family twice"\nprint(len(families))';
  const { stdout } = await execa(join(repoRoot, '.venv/bin/python'), ['-c', code], { input: body });
  assert.ok(Number(stdout) > 20, stdout);
}
