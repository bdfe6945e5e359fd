// The control worker of the scale benchmark: keel's own worker (workers/control.ts, the real activities and workflows)
// in a process whose every executor is a SimulatedExecutor over one simulated cluster, with the stand-in Ray dashboard
// on the port the benchmark chose. Configured by KEEL_SIMULATED_CLUSTER (JSON: SimulatedClusterOptions and
// dashboardPort). Over IPC it answers `cpu` with process.cpuUsage() and `reset` by emptying the simulated cluster.
import { provideExecutors } from '../../activities/context.js';
import type { Executor } from '../../src/exec/index.js';
import { createControlWorker } from '../../workers/control.js';
import { SimulatedCluster, SimulatedExecutor, type SimulatedClusterOptions } from '../support/simulated-cluster.js';

export type ScaleWorkerMessage = { type: 'cpu' } | { type: 'reset' };
export type ScaleWorkerReply =
  { type: 'cpu'; usage: NodeJS.CpuUsage } | { type: 'reset'; commands: [string, number][]; maxInFlight: number };

const config = JSON.parse(process.env.KEEL_SIMULATED_CLUSTER ?? '{}') as SimulatedClusterOptions & {
  dashboardPort: number;
};
const cluster = new SimulatedCluster(config);
const dashboard = await cluster.serveDashboard(config.dashboardPort);

const executors = new Map<string, Executor>();
provideExecutors((spec) => {
  const key = JSON.stringify([spec.cluster.stateDir, spec.cluster.maxConcurrentCommands]);
  let executor = executors.get(key);
  if (!executor) {
    const stateDir = spec.cluster.stateDir;
    executor = new SimulatedExecutor(
      cluster,
      (node) => stateDir.replaceAll('{node}', node.name ?? node.host),
      spec.cluster.maxConcurrentCommands,
    );
    executors.set(key, executor);
  }
  return executor;
});

process.on('message', (message: ScaleWorkerMessage) => {
  if (message.type === 'cpu') process.send?.({ type: 'cpu', usage: process.cpuUsage() } satisfies ScaleWorkerReply);
  if (message.type === 'reset') {
    const commands = [...cluster.commands.entries()];
    const maxInFlight = cluster.maxInFlight;
    cluster.reset();
    process.send?.({ type: 'reset', commands, maxInFlight } satisfies ScaleWorkerReply);
  }
});

const { worker, connection } = await createControlWorker();
try {
  await worker.run();
} finally {
  await connection.close();
  await dashboard.close();
  process.disconnect?.();
}
