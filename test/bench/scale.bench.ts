// Scale, by simulation: the probe step and the Ray cluster step of a pipeline over 16, 128 and 1024 simulated nodes,
// through the real dev server and keel's control worker (its own process, test/bench/scale-worker.ts) whose executor
// is a SimulatedExecutor: every command a node is asked answers after a fixed latency, with no work on this host, and
// a node joins the stand-in Ray dashboard a fixed time after its `ray start`. Prints per node count the wall time of
// the run and of each step, the worker's CPU time (process.cpuUsage of the worker process), the run's history events
// and bytes, and what the nodes were asked; then wall(1024) / wall(16). A fresh worker per node count, warmed up by a
// 4-node run first, so neither start-up nor another count's state is measured.
// KEEL_SCALE_NODES=16,128 picks the counts; KEEL_SIM_LATENCY_MS and KEEL_SIM_RAY_REGISTRATION_MS the simulation;
// KEEL_SCALE_MAX_COMMANDS the spec's cluster.maxConcurrentCommands (default 64).
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import proto from '@temporalio/proto';
import type { Client } from '@temporalio/client';
import type { ResultPromise } from 'execa';
import { freePort } from '../../src/local/net.js';
import { defaultMaxConcurrentCommands } from '../../src/exec/index.js';
import { statusQuery } from '../../workflows/definitions.js';
import { startControlPlane } from '../support/control-plane.js';
import { commandSpec, tempDir } from '../support/pipeline.js';
import type { ScaleWorkerMessage, ScaleWorkerReply } from './scale-worker.js';
import type { SimulatedClusterOptions } from '../support/simulated-cluster.js';

const counts = (process.env.KEEL_SCALE_NODES ?? '16,128,1024').split(',').map(Number);
const latencyMs = Number(process.env.KEEL_SIM_LATENCY_MS ?? 50);
const rayRegistrationMs = Number(process.env.KEEL_SIM_RAY_REGISTRATION_MS ?? 1000);
const maxConcurrentCommands = Number(process.env.KEEL_SCALE_MAX_COMMANDS ?? defaultMaxConcurrentCommands);
const gpusPerNode = 4; // the captured H200 node's
// The shared storage is a real directory of this host (the worker reads the probe's nonce file there, as a worker
// that mounts the nodes' storage does); everything else exists only in the simulation.
const paths = {
  baseDir: join(tmpdir(), `keel-scale-shared-${process.pid}`),
  slime: '/sim/slime',
  megatron: '/sim/megatron',
  state: '/sim/state/{node}',
};

type IpcWorker = ResultPromise<{ ipc: true }>;

async function ask<T extends ScaleWorkerReply['type']>(
  worker: IpcWorker,
  type: T,
): Promise<Extract<ScaleWorkerReply, { type: T }>> {
  const reply = worker.getOneMessage();
  await worker.sendMessage({ type } satisfies ScaleWorkerMessage);
  const message = (await reply) as ScaleWorkerReply;
  if (message.type !== type) throw new Error(`the scale worker answered ${message.type} to ${type}`);
  return message as Extract<ScaleWorkerReply, { type: T }>;
}

function simulatedSpec(name: string, count: number, dashboardPort: number) {
  const nodes = Array.from({ length: count }, (_, i) => ({
    host: `10.1.${Math.floor(i / 250)}.${(i % 250) + 1}`,
    name: `${name}-${String(i).padStart(4, '0')}`,
    gpus: gpusPerNode,
  }));
  return commandSpec({
    name,
    dir: '/sim',
    steps: { probe: { kind: 'probe' }, cluster: { kind: 'ray-cluster', needs: ['probe'] } },
    overrides: {
      storage: { baseDir: paths.baseDir },
      cluster: {
        nodes,
        spares: [],
        gpusPerNode,
        executor: { kind: 'ssh', user: 'keel' },
        stateDir: paths.state,
        maxConcurrentCommands,
      },
      slime: { dir: paths.slime, megatronPath: paths.megatron, python: 'python3' },
      rayHead: { isolateNodes: null, dashboardHost: '127.0.0.1', dashboardPort, stopStaleRay: false },
      distributed: { actorNumNodes: Math.min(4, count), actorNumGpusPerNode: gpusPerNode },
      conversion: { nodes: Math.min(4, count) },
    },
  });
}

interface Figures {
  count: number;
  wallS: number;
  probeS: number;
  clusterS: number;
  cpuS: number;
  events: number;
  historyBytes: number;
  commands: [string, number][];
  maxInFlight: number;
}

async function runPipeline(client: Client, taskQueue: string, name: string, count: number, port: number) {
  const handle = await client.workflow.start('pipeline', {
    taskQueue,
    workflowId: `${name}-${Date.now()}`,
    args: [simulatedSpec(name, count, port)],
  });
  await handle.result();
  return handle;
}

async function measure(
  cp: Awaited<ReturnType<typeof startControlPlane>>,
  client: Client,
  count: number,
): Promise<Figures> {
  const port = await freePort('127.0.0.1');
  const options: SimulatedClusterOptions = {
    latencyMs,
    rayRegistrationMs,
    sharedDirs: [paths.baseDir],
    existingDirs: [paths.slime, paths.megatron, paths.baseDir],
    sharedOnDisk: true,
  };
  const worker = cp.startWorker({
    script: 'test/bench/scale-worker.ts',
    ipc: true,
    env: { KEEL_SIMULATED_CLUSTER: JSON.stringify({ ...options, dashboardPort: port }) },
  }) as IpcWorker;
  try {
    await runPipeline(client, cp.taskQueue, `warm${count}`, 4, port);
    await ask(worker, 'reset');
    const cpuBefore = (await ask(worker, 'cpu')).usage;
    const started = performance.now();
    const handle = await runPipeline(client, cp.taskQueue, `sim${count}`, count, port);
    const wallS = (performance.now() - started) / 1000;
    const cpuAfter = (await ask(worker, 'cpu')).usage;
    const { commands, maxInFlight } = await ask(worker, 'reset');
    const status = await handle.query(statusQuery);
    const stepS = (id: string) => {
      const step = status.steps.find((s) => s.id === id);
      if (step?.state !== 'succeeded') throw new Error(`${id} ${step?.state}: ${step?.reason}`);
      return (Date.parse(step.endedAt!) - Date.parse(step.startedAt!)) / 1000;
    };
    const history = await handle.fetchHistory();
    return {
      count,
      wallS,
      probeS: stepS('probe'),
      clusterS: stepS('cluster'),
      cpuS: (cpuAfter.user - cpuBefore.user + cpuAfter.system - cpuBefore.system) / 1e6,
      events: history.events?.length ?? 0,
      historyBytes: proto.temporal.api.history.v1.History.encode(history).finish().length,
      commands: commands.sort((a, b) => b[1] - a[1]),
      maxInFlight,
    };
  } finally {
    worker.kill('SIGTERM');
    await worker;
  }
}

export async function run(): Promise<void> {
  const root = await tempDir('keel-bench-scale-');
  const cp = await startControlPlane({ root });
  const { client, close } = await cp.connect();
  console.log(
    `  simulated nodes: every command answers after ${latencyMs} ms, a node is ALIVE in Ray ${rayRegistrationMs} ms ` +
      `after its ray start; at most ${maxConcurrentCommands} commands in flight (cluster.maxConcurrentCommands)`,
  );
  try {
    const figures: Figures[] = [];
    for (const count of counts) {
      const f = await measure(cp, client, count);
      figures.push(f);
      console.log(
        `  ${String(count).padStart(5)} nodes: run ${f.wallS.toFixed(2)} s (probe ${f.probeS.toFixed(2)} s, ` +
          `ray-cluster ${f.clusterS.toFixed(2)} s), worker CPU ${f.cpuS.toFixed(2)} s, ` +
          `history ${f.events} events / ${(f.historyBytes / 1024).toFixed(0)} KiB; ` +
          `commands (at most ${f.maxInFlight} at once): ${f.commands.map(([k, n]) => `${k} ${n}`).join(', ')}`,
      );
    }
    const first = figures[0]!;
    const last = figures[figures.length - 1]!;
    if (figures.length > 1) {
      console.log(
        `  wall(${last.count}) / wall(${first.count}) = ${(last.wallS / first.wallS).toFixed(2)} for the run, ` +
          `${((last.probeS + last.clusterS) / (first.probeS + first.clusterS)).toFixed(2)} for the two steps ` +
          `(${last.count / first.count}x the nodes; goal: within 3x)`,
      );
    }
  } finally {
    await close();
    await cp.stopServer();
    await rm(paths.baseDir, { recursive: true, force: true });
  }
}
