// Supervision keeps the head's answer and the job log's apart: while Ray's job endpoint answers, a log read that fails
// or stalls is only read again at the next poll (never a head loss, and the time the log goes unread is never the
// trainer's idle time), the activity heartbeats while it waits, and supervision ends at the next checkpoint once the
// log is readable again. Control: a job endpoint that fails for longer than the head-lost window does end as
// head-lost (and not as a hang: nobody read the log meanwhile).
//
// The dashboard is a stand-in HTTP server answering as Ray 2.60's does for what supervision asks (the job, the nodes,
// the job's log: its last lines on the driver's node, or whole); supervision is keel's own, run under Temporal's mock
// activity environment, on the tiny-local spec (local executor: the head node answers) with short policies.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, it } from 'node:test';
import type { Logger, LogLevel, LogMetadata } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { supervisionActivities, type SuperviseOutcome } from '../../activities/supervise.js';
import { resolveSpecOrThrow } from '../../src/spec/index.js';

const jobId = 'keel-slow-log-job';
const driverNodeId = 'c0ffee00driver';
/** The head-lost window of supervision at this heartbeat timeout: max(15 s, 5 polls). */
const headLostWindowMs = 15_000;
const heartbeatTimeoutMs = 5000;
/** Supervision's poll at this heartbeat timeout: a fifth of it. */
const pollMs = heartbeatTimeoutMs / 5;
const hangRolloutMs = 8000;
/** How long the log fails first: past both the head-lost window and the rollout hang timeout. */
const faultMs = 20_000;
/** Within it, requests fail at once for this long, then one is held, then they fail at once again. */
const failFirstMs = 8000;
/**
 * How long it fails the second time: past the hang timeout, short of the 15 s between two reads that supervision
 * skips whole (so only the failed reads' own accounting keeps the outage off the hang clock).
 */
const secondFaultMs = 10_000;

type Endpoint = 'lines' | 'whole';
interface Served {
  what: 'job' | 'nodes' | 'log';
  at: number;
  /** when the answer was sent, or when the client gave up (status 0) */
  end: number;
  status: number;
}

/**
 * Ray's dashboard as supervision reads it. `lines`: the job names its driver's node (a node keel does not know), so
 * the log is read as its last lines (`/api/v0/logs/file?lines=N`); `whole`: no driver node yet, the whole log
 * (`/api/jobs/<id>/logs`). While `fault` names the log or the job endpoint, requests to it fail at once with 500,
 * but the first one from `holdFrom` on, which is held `holdMs` (then answered 500; never answered when Infinity:
 * keel's own timeout ends it).
 */
async function standInDashboard(endpoint: Endpoint) {
  const state = {
    log: '',
    fault: undefined as 'log' | 'job' | undefined,
    holdMs: 0,
    /** the first request to the failing endpoint from then on is held */
    holdFrom: Infinity,
    held: false,
    served: [] as Served[],
  };
  const server = http.createServer((req, res) => {
    const at = Date.now();
    const url = new URL(req.url ?? '/', 'http://stand-in');
    const answer = (what: Served['what'], status: number, body: string, type = 'application/json') => {
      if (res.destroyed) return;
      state.served.push({ what, at, end: Date.now(), status });
      res.writeHead(status, { 'content-type': type }).end(body);
    };
    const serve = (what: 'job' | 'log', body: () => string, type: string) => {
      if (state.fault !== what) return answer(what, 200, body(), type);
      const traceback = 'Traceback (most recent call last):\n  ...\nRuntimeError: the agent did not answer\n';
      if (state.held || at < state.holdFrom) return answer(what, 500, traceback, 'text/plain');
      state.held = true;
      res.on('close', () => {
        if (!res.writableEnded) state.served.push({ what, at, end: Date.now(), status: 0 });
      });
      if (Number.isFinite(state.holdMs)) setTimeout(() => answer(what, 500, traceback, 'text/plain'), state.holdMs);
    };
    if (req.method !== 'GET') return answer('job', 405, '{}');
    if (url.pathname === `/api/jobs/${jobId}`)
      return serve('job', () => JSON.stringify(rayJob(endpoint === 'lines' ? driverNodeId : null)), 'application/json');
    if (url.pathname === '/api/v0/nodes') return answer('nodes', 200, JSON.stringify(rayNodes()));
    if (url.pathname === '/api/v0/logs/file' && endpoint === 'lines') {
      const lines = Number(url.searchParams.get('lines'));
      const known = url.searchParams.get('submission_id') === jobId && url.searchParams.get('node_id') === driverNodeId;
      if (!known || !(lines > 0)) return answer('log', 400, '{"result": false}');
      return serve('log', () => lastLines(state.log, lines), 'text/plain');
    }
    if (url.pathname === `/api/jobs/${jobId}/logs` && endpoint === 'whole')
      return serve('log', () => JSON.stringify({ logs: state.log }), 'application/json');
    return answer('job', 404, '{}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const close = async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  };
  return { state, port, close };
}

/** `GET /api/jobs/<id>` of a running job (Ray 2.60's JobDetails). */
function rayJob(driverNode: string | null) {
  return {
    type: 'SUBMISSION',
    job_id: '02000000',
    submission_id: jobId,
    driver_info: null,
    status: 'RUNNING',
    entrypoint: 'python3 train.py',
    message: 'Job is currently running.',
    error_type: null,
    start_time: 1_765_000_000_000,
    end_time: null,
    metadata: {},
    runtime_env: {},
    driver_agent_http_address: null,
    driver_node_id: driverNode,
    driver_exit_code: null,
  };
}

/** `GET /api/v0/nodes`: the run's four nodes alive, and the driver's node, one keel does not know. */
function rayNodes() {
  const node = (id: string, ip: string, head = false) => ({
    node_id: id,
    node_ip: ip,
    is_head_node: head,
    state: 'ALIVE',
    state_message: null,
    resources_total: { CPU: 4, GPU: 2 },
  });
  const nodes = [1, 2, 3, 4].map((i) => node(`node${i}`, `127.0.1.${i}`, i === 1));
  nodes.push(node(driverNodeId, '127.0.9.9'));
  return {
    result: true,
    msg: '',
    data: { result: { total: nodes.length, num_after_truncation: nodes.length, result: nodes } },
  };
}

/** The last `count` lines, as the agent reads them back from the end of the file (the whole log when shorter). */
function lastLines(text: string, count: number): string {
  let at = text.endsWith('\n') ? text.length - 1 : text.length;
  for (let n = 0; n < count && at > 0; n++) at = text.lastIndexOf('\n', at - 1);
  return at <= 0 ? text : text.slice(at + 1);
}

// slime's lines (Ray prefixes each with its actor), as the tiny trainer prints them
const trainer = '(MegatronTrainRayActor pid=2211)';
const rolloutManager = '(RolloutManager pid=2187)';
/** A rollout's lines: generation done, its stats, a train step, the trainer's timings. */
const rolloutLines = (rollout: number) => [
  `${rolloutManager} perf ${rollout}: {'perf/rollout_time': 2.5, 'rollout/raw_reward': 0.25}\n`,
  `${rolloutManager} rollout ${rollout}: {'rollout/raw_reward': 0.25, 'rollout/response_len/mean': 41.0}\n`,
  `${trainer} step ${rollout}: {'train/loss': 0.0312, 'train/grad_norm': 0.8}\n`,
  `${trainer} perf ${rollout}: {'perf/train_time': 1.5, 'perf/step_time': 1.6}\n`,
];
const saveLines = (iteration: number, save: string) =>
  `${trainer} saving checkpoint at iteration ${String(iteration).padStart(7)} to ${save} in torch_dist format\n` +
  `${trainer} successfully saved checkpoint from iteration ${String(iteration).padStart(7)} to ${save}\n`;

/** A finished Megatron torch_dist save of `iteration` and the tracker naming it. */
async function saveCheckpoint(save: string, iteration: number) {
  const dir = path.join(save, `iter_${String(iteration).padStart(7, '0')}`);
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, '__0_0.distcp'), 'shard');
  await writeFile(path.join(dir, 'common.pt'), 'common');
  await writeFile(path.join(dir, 'metadata.json'), JSON.stringify({ sharded_backend: 'torch_dist' }));
  await writeFile(path.join(dir, '.metadata'), 'metadata');
  await writeFile(path.join(save, 'latest_checkpointed_iteration.txt'), String(iteration));
}

/** Warnings and errors supervision logged, kept (they name each poll's unread log). */
function collectingLogger(lines: string[]): Logger {
  const keep = (level: LogLevel, message: string, meta?: LogMetadata) => {
    if (level === 'WARN' || level === 'ERROR') lines.push(`${message} ${JSON.stringify(meta ?? {})}`);
  };
  return {
    log: keep,
    trace: (m, meta) => keep('TRACE', m, meta),
    debug: (m, meta) => keep('DEBUG', m, meta),
    info: (m, meta) => keep('INFO', m, meta),
    warn: (m, meta) => keep('WARN', m, meta),
    error: (m, meta) => keep('ERROR', m, meta),
  };
}

async function until(what: string, deadline: number, check: () => boolean): Promise<void> {
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const cleanups: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

/**
 * Supervise a running job on the stand-in. The trainer has logged rollouts 0 and 1. Then the job endpoint fails until
 * supervision gives up, or the log fails for `faultMs` and a few polls more; readable again, it shows nothing new for
 * two polls (the hang clock is judged on a log read to its end), then rollout 2's generation; it fails again for
 * `secondFaultMs`, shows nothing new for two polls, then the rest of rollout 2 and its save, and checkpoint 2 lands.
 */
async function supervise(endpoint: Endpoint, fault: 'log' | 'job', holdMs = 0) {
  const dashboard = await standInDashboard(endpoint);
  const save = await mkdtemp(path.join(os.tmpdir(), 'keel-slow-log-'));
  cleanups.push(dashboard.close, () => rm(save, { recursive: true, force: true }));
  const spec = resolveSpecOrThrow({
    preset: 'tiny-local',
    overrides: {
      rayHead: { isolateNodes: null, dashboardHost: '127.0.0.1', dashboardPort: dashboard.port },
      ckpt: { save },
      policies: { heartbeatTimeout: `${heartbeatTimeoutMs / 1000}s`, hang: { rollout: `${hangRolloutMs / 1000}s` } },
    },
  });
  const { state } = dashboard;
  state.log = [...rolloutLines(0), ...rolloutLines(1)].join('');
  state.holdMs = holdMs;

  const warnings: string[] = [];
  const env = new MockActivityEnvironment({ heartbeatTimeoutMs }, { logger: collectingLogger(warnings) });
  const beats: number[] = [];
  env.on('heartbeat', () => beats.push(Date.now()));
  const { superviseUntilCheckpoint } = supervisionActivities({ cwd: process.cwd(), env: process.env });
  const startedAt = Date.now();
  let ended = false;
  const outcome: Promise<SuperviseOutcome> = env.run(superviseUntilCheckpoint, { spec, runKey: 'slow-log', jobId });
  let endedAt = 0;
  const stop = () => {
    ended = true;
    endedAt = Date.now();
  };
  outcome.then(stop, stop);
  const deadline = startedAt + 80_000;
  const guard = setTimeout(() => env.cancel(), deadline - startedAt);

  const logOk = () => state.served.filter((s) => s.what === 'log' && s.status === 200);
  const timeline = { faultAt: 0, recoveredAt: 0, secondAt: 0, secondRecoveredAt: 0 };
  /** The log failing for `ms`, and 3 s more after the held read; then two reads that find nothing new. */
  const logFault = async (ms: number) => {
    const from = Date.now();
    state.fault = 'log';
    await until('the end of the fault', deadline, () => ended || Date.now() - from >= ms);
    await until('the held read to end', deadline, () => ended || !state.held || state.served.some(isHeld));
    const heldEnd = state.served.find(isHeld)?.end ?? 0;
    await until('polls after the held read', deadline, () => ended || Date.now() - heldEnd >= 3000);
    state.fault = undefined;
    const to = Date.now();
    await until('reads after the fault', deadline, () => ended || logOk().filter((s) => s.at >= to).length >= 2);
    return { from, to };
  };
  /** The trainer logs `text`; returns once supervision has read it. */
  const logs = async (text: string) => {
    state.log += text;
    const at = Date.now();
    await until('the new lines read', deadline, () => ended || logOk().some((s) => s.at >= at));
  };
  const script = (async () => {
    await until('the first reads of the log', deadline, () => ended || logOk().length >= 2);
    if (ended) return;
    timeline.faultAt = Date.now();
    state.holdFrom = timeline.faultAt + failFirstMs;
    if (fault === 'job') {
      state.fault = 'job';
      return;
    }
    timeline.recoveredAt = (await logFault(faultMs)).to;
    const [generated, ...rest] = rolloutLines(2);
    await logs(generated!);
    const second = await logFault(secondFaultMs);
    [timeline.secondAt, timeline.secondRecoveredAt] = [second.from, second.to];
    await logs(rest.join('') + saveLines(2, save));
    await saveCheckpoint(save, 2);
  })();
  try {
    const [result] = await Promise.all([outcome, script]);
    return { result, state, timeline, beats, warnings, startedAt, endedAt };
  } finally {
    clearTimeout(guard);
    if (!ended) env.cancel();
  }
}

/** A request the stand-in held (then answered 500, or keel gave up: status 0). */
const isHeld = (s: Served) => s.status !== 200 && s.end - s.at >= 9000;

/**
 * The activity heartbeated all along, from its start to its end, the stalled requests included: Temporal would
 * otherwise time it out.
 */
function assertHeartbeats({ beats, startedAt, endedAt }: { beats: number[]; startedAt: number; endedAt: number }) {
  const times = [startedAt, ...beats, endedAt];
  const longest = Math.max(...times.slice(1).map((b, i) => b - times[i]!));
  assert.ok(longest < heartbeatTimeoutMs, `heartbeats at most ${longest} ms apart`);
}

describe('supervision while the job log cannot be read and the head answers', { concurrency: true }, () => {
  for (const [endpoint, holdMs] of [
    ['lines', 12_000],
    ['whole', Infinity],
  ] as const) {
    it(`the ${endpoint} log over HTTP failing for ${faultMs / 1000} s, one read stalled, and again for ${secondFaultMs / 1000} s: read again, no head loss, no hang, the checkpoint`, async (t) => {
      const run = await supervise(endpoint, 'log', holdMs);
      const { result, state, timeline, warnings } = run;
      assert.equal(result.kind, 'checkpoint', JSON.stringify(result.kind === 'failed' ? result.failure : result));
      if (result.kind !== 'checkpoint') return;
      assert.equal(result.iteration, 2);
      assert.deepEqual(result.saved, [2]);
      assert.equal(result.lastRollout, 2, 'the lines logged after the faults were read');
      assert.deepEqual(
        result.rewards?.map((r) => r.rollout),
        [0, 1, 2],
      );

      const during = (from: number, to: number) => state.served.filter((s) => s.at >= from && s.at < to);
      const okLogs = state.served.filter((s) => s.what === 'log' && s.status === 200);
      for (const [from, to, longerThan] of [
        [timeline.faultAt, timeline.recoveredAt, headLostWindowMs],
        [timeline.secondAt, timeline.secondRecoveredAt, hangRolloutMs],
      ] as const) {
        const window = during(from, to);
        // Every log read of the window failed ...
        const logs = window.filter((s) => s.what === 'log');
        assert.ok(logs.length >= 2 && logs.every((s) => s.status !== 200));
        const lastRead = Math.max(...okLogs.filter((s) => s.at < from).map((s) => s.end));
        const nextRead = Math.min(...okLogs.filter((s) => s.at >= to).map((s) => s.end));
        const firstFailure = Math.min(...logs.map((s) => s.end));
        const failedFor = Math.max(...logs.map((s) => s.end)) - firstFailure;
        const unreadFor = nextRead - lastRead;
        // ... for longer than the head-lost window as supervision saw it (first failure to last), or than the hang
        // timeout between two reads of the log
        assert.ok(longerThan === hangRolloutMs || failedFor > longerThan, `the log failed for ${failedFor} ms`);
        assert.ok(unreadFor > longerThan, `the log went unread for ${unreadFor} ms`);
        // ... while the job endpoint answered every poll, also that long after the log's last read.
        const jobs = window.filter((s) => s.what === 'job');
        assert.ok(jobs.every((s) => s.status === 200));
        assert.ok(
          jobs.some((s) => s.at - lastRead > longerThan),
          'the job was polled all along',
        );
        // Read again poll by poll, not in a loop as fast as the failures come.
        assert.ok(logs.length <= (to - from) / pollMs + 10, `${logs.length} log requests in ${to - from} ms`);
        t.diagnostic(
          `${logs.length} log reads failed over ${failedFor} ms (unread ${unreadFor} ms); the job answered ${jobs.length} polls`,
        );
      }
      const held = during(timeline.faultAt, timeline.recoveredAt).find(isHeld);
      assert.ok(held, 'one read stalled');
      // over the last lines keel waits up to 60 s, and the stand-in answered first; the whole log, 10 s
      assert.equal(held.status, endpoint === 'lines' ? 500 : 0);

      assert.ok(warnings.some((w) => w.startsWith('the job log could not be read this poll')));
      if (endpoint === 'lines')
        assert.ok(warnings.some((w) => w.startsWith("reading the job log's last lines over HTTP")));
      assertHeartbeats(run);
    });
  }

  it('control: the job endpoint failing, one request stalled, past the head-lost window is head-lost, not a hang', async () => {
    const run = await supervise('lines', 'job', Infinity);
    const { result, state, timeline } = run;
    assert.equal(result.kind, 'failed', JSON.stringify(result));
    if (result.kind !== 'failed') return;
    assert.equal(result.failure.kind, 'head-lost', result.failure.message);
    // the held request, ended by keel's own timeout, is the one past the window
    assert.match(
      result.failure.message,
      /answers but its dashboard does not: GET \S+\/api\/jobs\/\S+ failed: timed out/,
    );
    assert.equal(result.lastRollout, 1);
    const detectedAfter = Date.parse(result.failure.detectedAt!) - timeline.faultAt;
    assert.ok(detectedAfter > headLostWindowMs, `detected ${detectedAfter} ms after the fault began`);
    const jobs = state.served.filter((s) => s.what === 'job' && s.at >= timeline.faultAt);
    assert.ok(jobs.length >= 2 && jobs.every((s) => s.status !== 200));
    assert.equal(jobs.find(isHeld)?.status, 0);
    assertHeartbeats(run);
  });
});
