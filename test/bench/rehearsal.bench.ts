// `npm run bench:rehearsal [-- --rollouts N --scale S --failure-rate X --levers seed|both|compare --json]`: the R1 run,
// rehearsed. The R1 preset's schedule (save and eval every 20 rollouts), policies (hang timeouts derived from its
// reliability estimates, the crash-loop guard) and retention, on the local cluster under the real keel, with the tiny
// stand-in trainer reproducing R1's timeline at 1/S of its pace: weight loading at start-up, the eval before rollout 0
// and every 20, rollouts, blocking saves (or async ones), checkpoints of many files deleted at a parallel file
// system's pace (test/support/slow-storage). keel's hang and crash-loop timers are R1's divided by S too.
// Failures are injected at X times Llama 3's rate for R1's 128 GPUs: crashes, hangs, a lost node and rollout-engine
// failures; a graceful worker restart and a Temporal server restart happen mid-run. The report: per failure,
// detection, keel's share, trainer start-up and rollouts lost; restarts with their cause and false restarts; ETTR
// measured by keel's recovery accounting against the plan's model fed with the rehearsal's own measured times and
// failure rate (src/plan/rehearsal.ts); history events per run segment; the control worker's CPU and the log bytes
// per poll at the start and at the end. `--levers both` rehearses with --async-save and --use-fault-tolerance on;
// `compare` rehearses the seed's settings, then both levers, and reports them side by side.
import { parseArgs } from 'node:util';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ResultPromise } from 'execa';
import { trainingStatusQuery, type TrainingStatus } from '../../workflows/definitions.js';
import { describeError } from '../../src/client/index.js';
import { RayJobsClient } from '../../src/cluster/ray-jobs.js';
import { dashboardUrlFor } from '../../activities/cluster.js';
import { startLocalCluster, type LocalCluster } from '../../src/local/cluster.js';
import { durationMs } from '../../src/spec/duration.js';
import { hangFromEstimates, hangMargin } from '../../src/spec/hang.js';
import { llama3FailuresPerGpuHour } from '../../src/spec/schema.js';
import { presets, type Spec } from '../../src/spec/index.js';
import { restartAccounts, type RestartAccount } from '../../src/progress/recovery.js';
import { failurePhase, measureLines, rehearsalEttr, type RehearsalEttr } from '../../src/plan/rehearsal.js';
import { startControlPlane, type ControlPlane } from '../support/control-plane.js';
import { tempDir } from '../support/pipeline.js';
import { sshUnavailableReason } from '../support/sshd.js';
import { repoRoot } from '../support/temporal.js';
import { modelCache, tinySpec, trainerPids } from '../support/tiny-pipeline.js';

type Kind = 'crash' | 'hang' | 'node-lost' | 'engine';
/** The injected mix: one in five is a rollout-engine failure (the R1 preset's reliability.engineFailureShare 0.2). */
const kinds: Kind[] = ['crash', 'hang', 'node-lost', 'crash', 'engine'];
/** R1's GPUs (16 nodes x 8): the failure rate is Llama 3's per GPU-hour times these. */
const r1Gpus = 128;
/** Deleting one of R1's 9.4 TB checkpoints on a parallel file system: an hour (an assumption; it is hours there). */
const r1DeletionMs = 3_600_000;
/** An SGLang engine restarted inside the job: two minutes (an assumption: engine start and a weight update). */
const r1EngineRestartMs = 120_000;
const unlinkSeconds = 0.005;

export interface Options {
  rollouts: number;
  scale: number;
  failureRate: number;
  levers: 'seed' | 'both' | 'compare';
  /**
   * Seconds the stand-in itself takes to start (a Ray job, Python and torch imports, the ranks), which no scale
   * shrinks: added to the start-up phase (so its timeout grows by twice this, as the R1 preset's hang margin says).
   */
  startupAllowance: number;
  /** the run's own figures (default: the R1 preset's): a rollout, a blocking save, a restart, an async save's staging */
  times: { rolloutTime: string; checkpointSaveTime: string; restartTime: string; asyncSaveBlockingTime: string };
  /** save (and eval) every this many rollouts (default: the R1 preset's 20) */
  saveInterval: number;
  json: boolean;
}

export interface Injection {
  kind: Kind;
  at: number;
  rollout: number;
  /** the job restarts because of it (not so for an engine failure with fault tolerance on) */
  restarts: boolean;
  /** rollouts done since the last save when it was injected */
  rolloutsSinceSave: number;
  /** an async save's write was still under way (its `saved` line not yet seen) */
  duringWrite: boolean;
}

export interface RehearsalReport {
  settings: 'seed' | 'both';
  rollouts: number;
  scale: number;
  failureRate: number;
  failuresInjected: number;
  injected: Injection[];
  restarts: number;
  falseRestarts: number;
  ettrMeasured: number;
  ettrModel: number;
  ettrModelAtRandom: number;
  ettr: RehearsalEttr;
  /** keel's account of each restart, in order */
  accounts: RestartAccount[];
  measured: {
    periodSeconds: number;
    /** from two saves of one job, or from the rollouts' own lines (src/plan/rehearsal.ts measureLines) */
    periodFrom: 'saves' | 'rollouts' | 'none';
    saveSeconds: number;
    asyncWriteSeconds?: number;
    saves: number;
    wallSeconds: number;
  };
  historyEvents: { runId: string; status: string; events: number }[];
  supervision: { start?: PollCost; end?: PollCost };
  minutes: number;
}

interface PollCost {
  cpuPercent: number;
  bytesPerPoll: number;
}

/** SIGINT or SIGTERM: the rehearsal stops and takes its cluster and control plane down with it. */
let interrupted = false;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** R1's reliability estimates (the preset's) and its timers, divided by the scale: what the stand-in and keel run on. */
function scaledTimeline(scale: number, startupAllowance: number, r1: Options['times']) {
  const s = (value: string | number) => (typeof value === 'number' ? value : durationMs(value)) / scale;
  const estimates = {
    restartTime: `${s(r1.restartTime)}ms`,
    rolloutTime: `${s(r1.rolloutTime)}ms`,
    checkpointSaveTime: `${s(r1.checkpointSaveTime)}ms`,
  };
  const hang = Object.fromEntries(
    Object.entries(hangFromEstimates(r1)).map(([phase, value]) => [
      phase,
      `${Math.round(s(value) + (phase === 'startup' ? hangMargin * startupAllowance * 1000 : 0))}ms`,
    ]),
  );
  return {
    estimates,
    hang,
    rolloutS: s(r1.rolloutTime) / 1000,
    saveS: s(r1.checkpointSaveTime) / 1000,
    asyncBlockS: s(r1.asyncSaveBlockingTime) / 1000,
    // R1's restart is loading the weights and starting the engines: half of it the stand-in's own sleep
    weightLoadS: s(r1.restartTime) / 2000,
    // an eval of 30 AIME prompts x 16 samples of up to 16k tokens: about half a rollout (32 x 8 of up to 32k, trained on)
    evalS: s(r1.rolloutTime) / 2000,
    engineRestartS: s(r1EngineRestartMs) / 1000,
    deletionS: s(r1DeletionMs) / 1000,
    crashLoopWindow: `${Math.round(s('1h'))}ms`,
    mtbfS: 3600 / (llama3FailuresPerGpuHour * r1Gpus) / scale,
  };
}

export async function rehearse(
  o: Options,
  settings: 'seed' | 'both',
  log: (line: string) => void,
): Promise<RehearsalReport> {
  const began = Date.now();
  const t = scaledTimeline(o.scale, o.startupAllowance, o.times);
  const root = await tempDir('keel-rehearsal-');
  const portBase = 27500;
  const cluster: LocalCluster = await startLocalCluster({
    root,
    repoRoot,
    nodes: 4,
    spares: 1,
    ssh: sshUnavailableReason() === undefined,
    cacheDir: modelCache,
  });
  let plane: ControlPlane | undefined;
  let worker: ResultPromise | undefined;
  try {
    plane = await startControlPlane({
      root,
      workerEnv: {
        KEEL_HF_ENDPOINT: cluster.hubEndpoint,
        KEEL_LOG_LEVEL: 'warn',
        // keel's deleter runs rm: here one that deletes at a parallel file system's pace
        PATH: [join(repoRoot, 'test', 'support', 'slow-storage'), process.env.PATH].join(delimiter),
        KEEL_TEST_UNLINK_S: String(unlinkSeconds),
      },
    });
    const engineFlag = join(root, 'engine-fails');
    const k = o.saveInterval;
    const ratio = o.rollouts / r1.rollout!.numRollout!;
    const spec: Spec = tinySpec(cluster, portBase, {
      name: `rehearsal-${settings}`,
      model: { saveDir: `save-rehearsal-${settings}/` },
      rollout: { numRollout: o.rollouts },
      ckpt: { saveInterval: k },
      eval: { evalInterval: k },
      extraArgs: settings === 'both' ? ['--async-save', '--use-fault-tolerance'] : [],
      policies: {
        hang: t.hang,
        crashLoop: { maxRestarts: 3, window: t.crashLoopWindow },
        // R1's keepLast 3 and keepEvery 500 of 3000 rollouts, scaled to this run's length; the best by eval
        retention: {
          keepLast: Math.max(1, Math.round(3 * ratio)),
          keepEvery: Math.max(1, Math.round(500 * ratio)),
          keepBest: 1,
        },
      },
      reliability: { ...t.estimates, failuresPerGpuHour: llama3FailuresPerGpuHour * o.failureRate },
      rayHead: {
        jobEnv: {
          TINY_ROLLOUT_SLEEP_S: t.rolloutS.toFixed(3),
          TINY_SAVE_SLEEP_S: t.saveS.toFixed(3),
          TINY_ASYNC_SAVE_BLOCK_S: t.asyncBlockS.toFixed(3),
          TINY_EVAL_SLEEP_S: t.evalS.toFixed(3),
          TINY_STARTUP_SLEEP_S: t.weightLoadS.toFixed(3),
          TINY_SAVE_FILES: String(Math.round(t.deletionS / unlinkSeconds)),
          TINY_ENGINE_FAIL_IF_EXISTS: engineFlag,
          TINY_ENGINE_RESTART_S: t.engineRestartS.toFixed(3),
        },
      },
    });
    const workflowId = `rehearsal-${settings}`;
    worker = plane.startWorker();
    let temporal = await plane.connect();
    const handle = await temporal.client.workflow.start('pipeline', {
      taskQueue: plane.taskQueue,
      workflowId,
      args: [spec],
    });
    const status = (): Promise<TrainingStatus | undefined> =>
      temporal.client.workflow
        .getHandle(`${workflowId}-training`)
        .query(trainingStatusQuery)
        .catch(() => undefined);

    // --- the observer: keel's status, the job's log lines by the time they appear, the worker's CPU ---
    const lineSeen = new Map<string, number>(); // `${job} ${what} ${iteration}` -> first seen
    const logLength = new Map<string, number>();
    const samples: { at: number; pid?: number; cpu?: number; job?: string; bytes?: number }[] = [];
    const injected: Injection[] = [];
    let firstRolloutAt: number | undefined;
    let lastRollout = -1;
    let controlPlaneBusy = false;
    let spareLeft = cluster.spares.length;
    let workerRestarted = false;
    let serverRestarted = false;
    let now: TrainingStatus | undefined;

    // keel's status says which job runs (its rollouts reach the workflow only at checkpoints); the job's own log says
    // where it is, line by line
    const logChars = new Map<string, number>();
    const jobsTraining = new Set<string>();
    const readLog = async (s: TrainingStatus): Promise<number | undefined> => {
      const head = s.activeNodes?.[0] ?? cluster.nodes[0]!.host;
      if (!s.jobId) return undefined;
      const jobs = new RayJobsClient({ url: dashboardUrlFor(spec, { host: head, gpus: 1 }), timeoutMs: 3000 });
      const text = (await jobs.getLogs(s.jobId).catch(() => undefined))?.text;
      if (text === undefined) return undefined;
      const fresh = text.slice(Math.min(logChars.get(s.jobId) ?? 0, text.length));
      logChars.set(s.jobId, text.length);
      logLength.set(s.jobId, Buffer.byteLength(text));
      const at = Date.now();
      const mark = (what: string, iteration: string) => {
        const key = `${s.jobId} ${what} ${Number(iteration)}`;
        if (!lineSeen.has(key)) lineSeen.set(key, at);
      };
      for (const m of fresh.matchAll(/saving checkpoint at iteration\s+(\d+)/g)) mark('saving', m[1]!);
      for (const m of fresh.matchAll(/successfully saved checkpoint from iteration\s+(\d+)/g)) mark('saved', m[1]!);
      for (const m of fresh.matchAll(/scheduled an async checkpoint save at iteration\s+(\d+)/g)) mark('staged', m[1]!);
      // the rollout side's perf line (its dict has perf/rollout_time): rollout N generated
      let last: number | undefined;
      for (const m of text.matchAll(/(?:^|\n)perf (\d+): \{[^\n]*rollout_time/g)) {
        last = Number(m[1]);
        mark('perf', m[1]!);
      }
      if (last !== undefined) jobsTraining.add(s.jobId);
      return last;
    };
    const cpuSeconds = async (pid: number | undefined) => {
      if (pid === undefined) return undefined;
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
      if (!stat) return undefined;
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks of 1/100 s
    };

    /** No failure being recovered from: every injected restart has been followed by a new job that trains. */
    const recovered = () => jobsTraining.size >= 1 + injected.filter((x) => x.restarts).length;

    const inject = async (kind: Kind, s: TrainingStatus): Promise<Kind> => {
      const head = s.activeNodes?.[0] ?? cluster.nodes[0]!.host;
      const all = [...cluster.nodes, ...cluster.spares];
      if (kind === 'node-lost' && spareLeft === 0) kind = 'crash';
      if (kind === 'node-lost') {
        const victim = (s.activeNodes ?? cluster.nodes.map((n) => n.host)).slice(1).at(-1);
        const index = all.findIndex((n) => n.host === victim);
        if (index < 0) kind = 'crash';
        else {
          spareLeft--;
          await cluster.killNode(index);
          return kind;
        }
      }
      if (kind === 'engine') {
        await writeFile(engineFlag, '');
        return kind;
      }
      const node = all.find((n) => n.host === head)!;
      const pids = await trainerPids(node.stateDir);
      for (const pid of pids) process.kill(pid, kind === 'hang' ? 'SIGSTOP' : 'SIGKILL');
      return kind;
    };

    const restartWorker = async () => {
      controlPlaneBusy = true;
      log(`  control plane: the worker is restarted gracefully (SIGTERM) at rollout ${lastRollout}`);
      worker!.kill('SIGTERM');
      await worker;
      worker = plane!.startWorker();
      controlPlaneBusy = false;
    };
    const restartServer = async () => {
      controlPlaneBusy = true;
      log(`  control plane: the Temporal server is restarted at rollout ${lastRollout}`);
      await temporal.close().catch(() => undefined);
      await plane!.stopServer();
      await sleep(5000);
      await plane!.startServer();
      temporal = await plane!.connect();
      const exited = await Promise.race([worker!.then(() => true), sleep(2000).then(() => false)]);
      if (exited) worker = plane!.startWorker();
      controlPlaneBusy = false;
    };

    // The run's end is seen by describing it on the client of the moment: a result() held open across the server's
    // restart would fail with the connection it was made on.
    const closed = async (): Promise<boolean> => {
      const described = await temporal.client.workflow
        .getHandle(handle.workflowId)
        .describe()
        .catch(() => undefined);
      return described !== undefined && described.status.name !== 'RUNNING';
    };
    let nextSampleAt = 0;
    for (;;) {
      await sleep(2000);
      if (interrupted) throw new Error('interrupted');
      if (Date.now() - began > 120 * 60_000) throw new Error('the rehearsal took more than 2 hours: given up');
      if (controlPlaneBusy) continue;
      if (await closed()) break;
      now = await status();
      if (!now) continue;
      const rollout = await readLog(now);
      const at = Date.now();
      if (at >= nextSampleAt) {
        nextSampleAt = at + 5000;
        samples.push({
          at,
          pid: worker?.pid,
          cpu: await cpuSeconds(worker?.pid),
          job: now.jobId,
          bytes: now.jobId ? logLength.get(now.jobId) : undefined,
        });
      }
      if (rollout === undefined) continue;
      const advanced = rollout !== lastRollout;
      if (advanced && rollout % 10 === 0 && firstRolloutAt !== undefined)
        log(`  rollout ${rollout} at ${((at - firstRolloutAt) / 1000).toFixed(0)} s (${now.restarts} restarts)`);
      lastRollout = rollout;
      firstRolloutAt ??= at;
      if (!advanced || firstRolloutAt === undefined || rollout >= o.rollouts - 2) continue;

      // The control plane's own faults, once each, between injected failures.
      if (!workerRestarted && rollout >= Math.floor(o.rollouts / 3) && recovered()) {
        workerRestarted = true;
        await restartWorker();
        continue;
      }
      if (!serverRestarted && rollout >= Math.floor((2 * o.rollouts) / 3) && recovered()) {
        serverRestarted = true;
        await restartServer();
        continue;
      }
      // The next failure: once its time has come (a Poisson rate's mean spacing), at its place in the save interval.
      const i = injected.length;
      const due = firstRolloutAt + ((i + 1) * t.mtbfS * 1000) / o.failureRate;
      if (at < due || !recovered() || (rollout + 1) % k !== failurePhase(i, k)) continue;
      const lastSave = Math.floor((rollout + 1) / k) * k - 1;
      const duringWrite =
        settings === 'both' &&
        lineSeen.has(`${now.jobId} saving ${lastSave}`) &&
        !lineSeen.has(`${now.jobId} saved ${lastSave}`);
      const kind = await inject(kinds[i % kinds.length]!, now);
      injected.push({
        kind,
        at,
        rollout,
        restarts: !(kind === 'engine' && settings === 'both'),
        rolloutsSinceSave: (rollout + 1) % k,
        duringWrite,
      });
      log(`  injected ${kind} at rollout ${rollout}`);
    }
    const result = await temporal.client.workflow
      .getHandle(handle.workflowId)
      .result()
      .catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
    if (result instanceof Error) throw new Error(`the rehearsal's run failed: ${describeError(result)}`);
    const final = (await status())!;
    const endedAt = lineSeen.get(`${final.jobId} saved ${o.rollouts - 1}`) ?? Date.now();

    // --- measured: the healthy period between saves, a save's blocking part and (async) its whole write ---
    const lines = measureLines(
      lineSeen,
      injected.map((x) => x.at),
      k,
      settings === 'both',
    );
    const wallSeconds = (endedAt - firstRolloutAt!) / 1000;
    const measured = {
      wallSeconds,
      periodSeconds: lines.periodSeconds,
      periodFrom: lines.periodFrom,
      saveSeconds: lines.saveSeconds,
      ...(settings === 'both' ? { asyncWriteSeconds: lines.asyncWriteSeconds } : {}),
      saves: lines.saves,
    };
    const ettr = rehearsalEttr(final, {
      ...measured,
      endedAt: new Date(endedAt).toISOString(),
      failuresInjected: injected.length,
      restartingFailures: injected.filter((x) => x.restarts).length,
      saveInterval: k,
      placement: {
        rolloutsSinceSave: injected.filter((x) => x.restarts).map((x) => x.rolloutsSinceSave),
        duringWrite: injected.filter((x) => x.restarts && x.duringWrite).length,
      },
    });

    // restarts no injection caused: each failure record is matched to the earliest unmatched injection before it
    const expected = injected.filter((x) => x.restarts).map((x) => x.at);
    let falseRestarts = 0;
    for (const f of restartAccounts(final)) {
      const at = Date.parse(f.at);
      const index = expected.findIndex((x) => x <= at);
      if (index >= 0) {
        expected.splice(index, 1);
        continue;
      }
      falseRestarts++;
      // what keel recorded, so that a false restart can be told from the report alone
      const record = final.failures.find((x) => x.at === f.at);
      log(
        `  false restart: ${f.kind} at rollout ${f.rollout ?? '-'} (tracker ${f.tracker ?? '-'}): ${record?.message ?? 'no message'}`,
      );
    }

    const historyEvents: RehearsalReport['historyEvents'] = [];
    for await (const run of temporal.client.workflow.list({ query: `WorkflowId = '${workflowId}-training'` }))
      historyEvents.push({ runId: run.runId, status: run.status.name, events: run.historyLength });
    historyEvents.reverse();
    await temporal.close().catch(() => undefined);

    return {
      settings,
      rollouts: o.rollouts,
      scale: o.scale,
      failureRate: o.failureRate,
      failuresInjected: injected.length,
      injected,
      restarts: final.restarts,
      falseRestarts,
      ettrMeasured: ettr.ettrMeasured,
      ettrModel: ettr.ettrModel,
      ettrModelAtRandom: ettr.ettrModelAtRandom,
      ettr,
      accounts: restartAccounts(final),
      measured,
      historyEvents,
      supervision: pollCosts(samples, firstRolloutAt!, endedAt),
      minutes: (Date.now() - began) / 60_000,
    };
  } finally {
    worker?.kill('SIGTERM');
    await worker?.catch(() => undefined);
    await cluster.stop();
    await plane?.stopServer();
    await rm(root, { recursive: true, force: true });
  }
}

/** The worker's CPU and the log bytes a poll reads (the log's growth per 2 s poll), over a minute at each end. */
function pollCosts(
  samples: { at: number; pid?: number; cpu?: number; job?: string; bytes?: number }[],
  from: number,
  to: number,
): { start?: PollCost; end?: PollCost } {
  const window = 60_000;
  const cost = (a: (typeof samples)[number] | undefined, b: (typeof samples)[number] | undefined) => {
    if (!a || !b || b.at <= a.at || a.pid !== b.pid || a.cpu === undefined || b.cpu === undefined) return undefined;
    const seconds = (b.at - a.at) / 1000;
    const bytes = a.job === b.job && a.bytes !== undefined && b.bytes !== undefined ? b.bytes - a.bytes : Number.NaN;
    return { cpuPercent: (100 * (b.cpu - a.cpu)) / seconds, bytesPerPoll: bytes / (seconds / 2) };
  };
  const inRange = samples.filter((s) => s.at >= from && s.at <= to);
  const startA = inRange[0];
  const startB = inRange.filter((s) => s.at <= (startA?.at ?? 0) + window && s.pid === startA?.pid).at(-1);
  const endB = inRange.at(-1);
  const lastMinute = inRange.filter((s) => s.at >= (endB?.at ?? 0) - window && s.at < (endB?.at ?? 0));
  // the same job's samples when there are (bytes per poll need them), else the worker's CPU alone
  const endA =
    lastMinute.find((s) => s.pid === endB?.pid && s.job === endB?.job) ?? lastMinute.find((s) => s.pid === endB?.pid);
  return { start: cost(startA, startB), end: cost(endA, endB) };
}

const f = (x: number | undefined, digits = 1) => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(digits));

export function printReport(r: RehearsalReport, log: (line: string) => void): void {
  log(
    `  ${r.settings === 'seed' ? "the seed's settings" : 'async save + engine fault tolerance'}: ${r.rollouts} rollouts ` +
      `at 1/${r.scale} of R1's pace, failures at ${r.failureRate}x Llama 3's rate; ${f(r.minutes)} min`,
  );
  log('  failure      at rollout   detection   keel   trainer start-up   rollouts lost');
  let restartIndex = 0;
  const records = r.accounts;
  for (const x of r.injected) {
    if (!x.restarts) {
      log(`  ${x.kind.padEnd(12)} ${String(x.rollout).padStart(10)}   restarted inside the job: no restart`);
      continue;
    }
    const a = records[restartIndex++];
    log(
      `  ${x.kind.padEnd(12)} ${String(x.rollout).padStart(10)} ${f(a?.detection).padStart(9)} s ${f(a?.keel).padStart(5)} s ` +
        `${f(a?.trainerStartup).padStart(14)} s ${String(a?.rolloutsLost ?? '-').padStart(15)}   (keel: ${a?.kind ?? '-'})`,
    );
  }
  log(`  restarts ${r.restarts} of ${r.failuresInjected} failures injected; false restarts ${r.falseRestarts}`);
  const m = r.ettr.model;
  log(
    `  measured: a save blocks ${f(m.saveSeconds)} s${r.measured.asyncWriteSeconds !== undefined ? ` (written in ${f(r.measured.asyncWriteSeconds)} s)` : ''}, ` +
      `a rollout ${f(m.rolloutSeconds)} s, a restart ${f(m.restartSeconds)} s, a failure every ${f(m.mtbfSeconds, 0)} s; ` +
      `training wall ${f(r.measured.wallSeconds, 0)} s, ${r.ettr.rolloutsLost} rollouts re-done`,
  );
  const since = r.injected.filter((x) => x.restarts).map((x) => x.rolloutsSinceSave);
  const during = r.injected.filter((x) => x.restarts && x.duringWrite).length;
  log(
    `  failures placed ${since.join(', ')} rollouts after a save` +
      `${r.settings === 'both' ? `, ${during} during a save's write` : ''} (at random times: half an interval)`,
  );
  log(
    `  ETTR measured ${r.ettrMeasured.toFixed(3)} (keel's recovery accounting), model ${r.ettrModel.toFixed(3)} ` +
      `(src/plan/reliability.ts with these inputs and this placement): difference ${(r.ettrMeasured - r.ettrModel).toFixed(3)}; ` +
      `model at random times ${r.ettrModelAtRandom.toFixed(3)} (as keel plan)`,
  );
  log(`  history events per run of the training workflow: ${r.historyEvents.map((h) => h.events).join(', ')}`);
  const cost = (c?: PollCost) => (c ? `CPU ${f(c.cpuPercent)}%, ${f(c.bytesPerPoll, 0)} B/poll` : '-');
  log(`  supervision: at the start ${cost(r.supervision.start)}; at the end ${cost(r.supervision.end)}`);
}

const r1 = presets['deepseek-r1-128xh100'];

function options(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      rollouts: { type: 'string', default: '60' },
      scale: { type: 'string', default: '150' },
      'failure-rate': { type: 'string', default: '45' },
      'startup-allowance': { type: 'string', default: '90' },
      'rollout-time': { type: 'string', default: r1.reliability!.rolloutTime },
      'save-time': { type: 'string', default: r1.reliability!.checkpointSaveTime },
      'restart-time': { type: 'string', default: r1.reliability!.restartTime },
      'async-save-blocking-time': { type: 'string', default: r1.reliability!.asyncSaveBlockingTime },
      'save-interval': { type: 'string', default: String(r1.ckpt!.saveInterval) },
      levers: { type: 'string', default: 'seed' },
      json: { type: 'boolean', default: false },
    },
  });
  const number = (name: string, value: string, min: number) => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number of at least ${min}, not ${value}`);
    return n;
  };
  const time = (name: string, value: string | undefined) => {
    if (value === undefined) throw new Error(`--${name} is needed`);
    try {
      durationMs(value);
      return value;
    } catch {
      throw new Error(`--${name} must be a duration like 20m or 90s, not ${value}`);
    }
  };
  const levers = values.levers;
  if (levers !== 'seed' && levers !== 'both' && levers !== 'compare')
    throw new Error(`--levers must be seed, both or compare, not ${levers}`);
  return {
    rollouts: Math.round(number('rollouts', values.rollouts, 21)),
    scale: number('scale', values.scale, 1),
    failureRate: number('failure-rate', values['failure-rate'], 0.001),
    startupAllowance: number('startup-allowance', values['startup-allowance'], 0),
    times: {
      rolloutTime: time('rollout-time', values['rollout-time']),
      checkpointSaveTime: time('save-time', values['save-time']),
      restartTime: time('restart-time', values['restart-time']),
      asyncSaveBlockingTime: time('async-save-blocking-time', values['async-save-blocking-time']),
    },
    saveInterval: Math.round(number('save-interval', values['save-interval'], 2)),
    levers,
    json: values.json,
  };
}

/** The JSON line's fields: the figures of the first rehearsal, and with --levers compare those with both levers. */
function summary(r: RehearsalReport) {
  return {
    settings: r.settings,
    rollouts: r.rollouts,
    scale: r.scale,
    failureRate: r.failureRate,
    failuresInjected: r.failuresInjected,
    restarts: r.restarts,
    falseRestarts: r.falseRestarts,
    ettrMeasured: Number(r.ettrMeasured.toFixed(4)),
    ettrModel: Number(r.ettrModel.toFixed(4)),
    ettrModelAtRandom: Number(r.ettrModelAtRandom.toFixed(4)),
    minutes: Number(r.minutes.toFixed(1)),
  };
}

export async function run(argv: string[] = []): Promise<void> {
  const o = options(argv);
  const log = (line: string) => console.log(line);
  const order: ('seed' | 'both')[] = o.levers === 'compare' ? ['seed', 'both'] : [o.levers];
  const reports: RehearsalReport[] = [];
  for (const settings of order) {
    const report = await rehearse(o, settings, log);
    printReport(report, log);
    reports.push(report);
  }
  if (o.json) {
    const [first, second] = reports.map(summary);
    console.log(JSON.stringify(second ? { ...first, levers: second } : first));
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => (interrupted = true));
  run(process.argv.slice(2)).then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error instanceof Error ? error.message : error);
      process.exit(1);
    },
  );
}
