// Nodes and the Ray cluster: probe every node, bring Ray up (head first, then workers in parallel), heal it after a
// failure (quarantine dead nodes, take spares, choose a new head), stop what keel launched.
import { ApplicationFailure, Context, log } from '@temporalio/activity';
import { z } from 'zod';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { buildProbeCommand, parseProbeOutput } from '../src/cluster/node-probe.js';
import { RayDashboardClient } from '../src/cluster/ray-dashboard.js';
import { rayTempDirFor } from '../src/cluster/ray-commands.js';
import { rayHeadCommand, rayWorkerCommands, nodeIp, nodeName } from '../src/recipe/commands.js';
import type { NodeSpec, Spec } from '../src/spec/schema.js';
import {
  executorFor,
  heartbeat,
  localSpec,
  sleepMs,
  target,
  allNodes,
  activitySignal,
  pauseWithHeartbeats,
  withHeartbeats,
  type ActivityDeps,
} from './context.js';
import { resolveNodes } from './supervise.js';
import { durationMs as msToNumber } from '../src/spec/duration.js';
import type { StepInput } from './steps.js';
import { checkFlagsOnCluster } from './flag-check.js';
import { checkInputsOnNodes } from './input-check.js';
import { checkWorkerStorageView } from './storage-view.js';
import { importProblems } from './import-check.js';
import { trainingStatusQuery } from '../workflows/definitions.js';

const addedNodesOf = z.object({
  extraNodes: z
    .array(z.object({ host: z.string(), gpus: z.number().optional(), name: z.string().optional() }))
    .optional(),
});

export interface NodeReport {
  node: string;
  reachable: boolean;
  gpus?: number;
  gpusHealthy?: number;
  gpuProcesses?: number[];
  memAvailableBytes?: number;
  diskFreeBytes?: number;
  sharedStorage?: boolean;
  slimeDir?: boolean;
  problems: string[];
}

export type ExtraNode = { host: string; gpus?: number; name?: string };

/** The head is the first node; the dashboard listens where the spec says (on the head's own address when isolated). */
export function dashboardUrlFor(spec: Spec, head: NodeSpec): string {
  const bound = spec.rayHead.dashboardHost;
  const host =
    spec.rayHead.isolateNodes || bound === undefined || bound === '0.0.0.0' || bound === '::' ? nodeIp(head) : bound;
  return `http://${host}:${ports(spec, 0).dashboard}`;
}

/** Ports: the recipe's defaults, or one block per node when several Ray nodes share a host. */
function ports(spec: Spec, index: number): { gcs: number; dashboard: number; extra: string[] } {
  const iso = spec.rayHead.isolateNodes;
  if (!iso) return { gcs: spec.rayHead.port, dashboard: spec.rayHead.dashboardPort, extra: [] };
  const base = iso.portBase + 10 + index * 10;
  return {
    gcs: iso.portBase,
    dashboard: iso.portBase + 1,
    extra: [
      `--node-manager-port=${base}`,
      `--object-manager-port=${base + 1}`,
      `--dashboard-agent-listen-port=${base + 2}`,
      `--dashboard-agent-grpc-port=${base + 3}`,
      `--runtime-env-agent-port=${base + 4}`,
      `--metrics-export-port=${base + 5}`,
      `--min-worker-port=${base + 100 + index * 200}`,
      `--max-worker-port=${base + 299 + index * 200}`,
    ],
  };
}

export async function reachable(spec: Spec, node: NodeSpec): Promise<boolean> {
  try {
    const r = await executorFor(spec).run(target(node), ['true'], { timeoutMs: 15_000 });
    return r.exitCode === 0;
  } catch {
    return false;
  }
}

/** Whether Ray has every node alive with all its GPUs; `missing`: the nodes not alive (all of them when unknown). */
export async function clusterHealthy(
  spec: Spec,
  nodes: NodeSpec[],
): Promise<{ healthy: boolean; reason: string; missing: NodeSpec[] }> {
  const head = nodes[0]!;
  const dashboard = new RayDashboardClient({ url: dashboardUrlFor(spec, head), timeoutMs: 5000 });
  try {
    const alive = await dashboard.aliveNodes();
    const ips = new Set(alive.map((n) => n.nodeIp));
    const missing = nodes.filter((n) => !ips.has(nodeIp(n)));
    const wanted = new Set(nodes.map(nodeIp));
    const gpus = alive.filter((n) => wanted.has(n.nodeIp)).reduce((a, n) => a + (n.gpus ?? 0), 0);
    const expected = nodes.reduce((a, n) => a + n.gpus, 0);
    if (missing.length) {
      return { healthy: false, reason: `nodes not alive in Ray: ${missing.map(nodeName).join(', ')}`, missing };
    }
    if (gpus < expected) return { healthy: false, reason: `${gpus} GPUs registered, expected ${expected}`, missing };
    return { healthy: true, reason: `${nodes.length} nodes alive with ${gpus} GPUs`, missing };
  } catch (error) {
    return { healthy: false, reason: `dashboard unreachable: ${(error as Error).message}`, missing: nodes };
  }
}

export function rayLaunchId(runKey: string, node: NodeSpec): string {
  return `${runKey}/ray/${nodeName(node).replace(/[^A-Za-z0-9._-]/g, '_')}`;
}

/** Which keel launch runs the node's Ray (written at every bring-up). */
function rayOwnerFile(spec: Spec, node: NodeSpec): string {
  return join(spec.cluster.stateDir.replaceAll('{node}', nodeName(node)), 'ray-launch');
}

/**
 * `work` on every node at once (the executor bounds the commands in flight), heartbeating as each node is done: a
 * fan-out over 1024 nodes takes longer than a short heartbeat timeout, and must not look like a dead worker.
 */
async function onEveryNode<T>(nodes: NodeSpec[], what: string, work: (node: NodeSpec) => Promise<T>): Promise<T[]> {
  let done = 0;
  return Promise.all(
    nodes.map(async (node) => {
      const result = await work(node);
      heartbeat({ [what]: ++done, of: nodes.length });
      return result;
    }),
  );
}

/** Stop keel's own Ray on these nodes (this run's, or another run's left running), and stale Ray when the spec allows it. */
async function cleanNodes(spec: Spec, runKey: string, nodes: NodeSpec[]): Promise<void> {
  const executor = executorFor(spec);
  await onEveryNode(nodes, 'cleaned', async (node) => {
    await executor.stop(target(node), rayLaunchId(runKey, node), { graceMs: 5000 }).catch(() => undefined);
    // A node runs one Ray: the one another run of keel left there (its cluster outlives the run) holds the ports.
    const owner = (await executor.readFile(target(node), rayOwnerFile(spec, node)).catch(() => undefined))?.trim();
    if (owner && owner !== rayLaunchId(runKey, node)) {
      log.info('stopping the Ray another keel run left on the node', { node: nodeName(node), launch: owner });
      await executor.stop(target(node), owner, { graceMs: 5000 }).catch(() => undefined);
    }
    if (spec.rayHead.stopStaleRay) {
      await executor
        .run(target(node), ['ray', 'stop', '--force'], { timeoutMs: 120_000, env: spec.cluster.env })
        .catch(() => undefined);
    }
  });
}

/** Ray's temp dir for a node with its own state dir (see rayTempDirFor). */
export function rayTempDir(spec: Spec, node: NodeSpec): string {
  return rayTempDirFor(spec.cluster.stateDir.replaceAll('{node}', nodeName(node)));
}

/**
 * Ray's launch on one node, as a keel process record (`--block`): stopping the record stops exactly this node's Ray.
 * `place`: the node's place in its cluster, for the ports of a node outside the spec's pool (added by an operator).
 */
async function launchRay(spec: Spec, runKey: string, node: NodeSpec, argv: string[], place: number): Promise<void> {
  const executor = executorFor(spec);
  // Ports follow the node, not its place in this bring-up: a spare that replaces a node never takes the ports the
  // replaced node's processes may still hold.
  const pool = allNodes(spec);
  const i = pool.findIndex((n) => nodeName(n) === nodeName(node));
  const p = ports(spec, i >= 0 ? i : pool.length + place);
  const extra = [...p.extra];
  if (spec.rayHead.isolateNodes) extra.push(`--temp-dir=${rayTempDir(spec, node)}`);
  await executor.writeFile(target(node), rayOwnerFile(spec, node), `${rayLaunchId(runKey, node)}\n`);
  await executor.launch(target(node), {
    id: rayLaunchId(runKey, node),
    argv: [...argv, ...extra, '--block'],
    env: { ...spec.cluster.env, RAY_USAGE_STATS_ENABLED: '0' },
  });
}

/** Head first, then the workers in parallel; done when the dashboard shows every node alive with its GPUs. */
async function bringUp(spec: Spec, runKey: string, nodes: NodeSpec[]): Promise<void> {
  const [head, ...workers] = nodes;
  if (!head) throw new Error('no nodes to start Ray on');
  const headArgv = rayHeadCommand(spec, head).argv.map((a) => adjustHeadArg(spec, a, head));
  if (spec.rayHead.isolateNodes) headArgv.push(`--port=${ports(spec, 0).gcs}`);
  await launchRay(spec, runKey, head, headArgv, 0);
  await waitFor(spec, [head], 120_000);
  await joinWorkers(spec, runKey, head, workers, nodes);
}

/**
 * Start Ray on `workers`, joining the head's cluster, and wait until `cluster` (head first) is alive. A node whose
 * `ray start` gave up (a raylet that timed out on a busy host) is started again, twice at most.
 */
async function joinWorkers(
  spec: Spec,
  runKey: string,
  head: NodeSpec,
  workers: NodeSpec[],
  cluster: NodeSpec[],
): Promise<void> {
  const executor = executorFor(spec);
  const workerArgvs = rayWorkerCommands(spec, [head, ...workers]).map((c) =>
    c.argv.map((a) => (a.startsWith('--address=') ? `--address=${nodeIp(head)}:${ports(spec, 0).gcs}` : a)),
  );
  const startWorker = (w: NodeSpec) =>
    launchRay(spec, runKey, w, workerArgvs[workers.indexOf(w)]!, Math.max(0, cluster.indexOf(w)));
  await onEveryNode(workers, 'launched', startWorker);
  const restarts = new Map<NodeSpec, number>();
  // Only the nodes Ray does not list yet, all at once (the executor bounds the commands in flight): one by one, every
  // node at every poll, 1024 nodes took 1023 round trips a poll.
  await waitFor(spec, cluster, 180_000, async (missing) => {
    const notListed = new Set(missing);
    await onEveryNode(
      workers.filter((w) => notListed.has(w)),
      'checked',
      async (w) => {
        const status = await executor.status(target(w), rayLaunchId(runKey, w)).catch(() => undefined);
        if (status?.state === 'exited' && (restarts.get(w) ?? 0) < 2) {
          restarts.set(w, (restarts.get(w) ?? 0) + 1);
          log.warn('ray start exited on a node; starting it again', { node: nodeName(w), exitCode: status.exitCode });
          await startWorker(w);
        }
      },
    );
  });
}

/** The nodes a job ran on, or undefined when one of them is no longer known (an operator's node gone from the list). */
function knownNodes(spec: Spec, names: string[] | undefined, extra: ExtraNode[]): NodeSpec[] | undefined {
  try {
    return resolveNodes(spec, names, extra);
  } catch {
    return undefined;
  }
}

/**
 * Is the keel launch that runs the node's Ray (its `ray start --block`) still running? Undefined when no record tells:
 * a Ray keel did not start, or a node that does not answer the question.
 */
async function rayLaunchRunning(spec: Spec, node: NodeSpec): Promise<boolean | undefined> {
  const executor = executorFor(spec);
  const owner = (await executor.readFile(target(node), rayOwnerFile(spec, node)).catch(() => undefined))?.trim();
  if (!owner) return undefined;
  const status = await executor.status(target(node), owner).catch(() => undefined);
  return status === undefined ? undefined : status.state === 'running';
}

/** What a heal did to the Ray cluster. */
export type HealMode = 'kept' | 'repaired' | 'restarted';

/**
 * Heal only what the failure touched: with the head's Ray alive, keep every node whose Ray is alive, restart Ray on a
 * reachable node whose Ray is gone, and replace an unreachable node by a healthy one from the pool. Undefined: the
 * head (or its dashboard) is gone, so the cluster must be brought up again from scratch.
 */
async function repairCluster(
  spec: Spec,
  runKey: string,
  kept: NodeSpec[],
  healthy: NodeSpec[],
): Promise<{ nodes: NodeSpec[]; restartedOn: NodeSpec[]; reason: string } | undefined> {
  const head = kept[0];
  const isHealthy = (n: NodeSpec) => healthy.some((h) => nodeName(h) === nodeName(n));
  if (!head || !isHealthy(head)) return undefined;
  const dashboard = new RayDashboardClient({ url: dashboardUrlFor(spec, head), timeoutMs: 5000 });
  const alive = await dashboard.aliveNodes().catch(() => undefined);
  if (!alive) return undefined;
  const aliveIps = new Set(alive.map((n) => n.nodeIp));
  // Ray's own view lags a node's death (until its health checks fail): keel's record of each node's Ray says at once.
  const launches = await Promise.all(kept.map((n) => (isHealthy(n) ? rayLaunchRunning(spec, n) : false)));
  const rayUp = (n: NodeSpec) => aliveIps.has(nodeIp(n)) && launches[kept.indexOf(n)] !== false;
  if (!rayUp(head)) return undefined;
  const lost = kept.filter((n) => !isHealthy(n));
  const rayGone = kept.filter((n) => isHealthy(n) && !rayUp(n));
  const replacements = healthy.filter((n) => !kept.some((k) => nodeName(k) === nodeName(n))).slice(0, lost.length);
  if (replacements.length < lost.length) return undefined;
  const nodes = kept.map((n) => (lost.includes(n) ? replacements[lost.indexOf(n)]! : n));
  const restartedOn = [...rayGone, ...replacements];
  if (restartedOn.length === 0) {
    const check = await clusterHealthy(spec, nodes);
    if (!check.healthy) return undefined;
    return { nodes, restartedOn, reason: `Ray kept on ${nodes.map(nodeName).join(', ')}: ${check.reason}` };
  }
  log.info('repairing the Ray cluster', {
    restartOn: restartedOn.map(nodeName),
    lost: lost.map(nodeName),
    kept: nodes.filter((n) => !restartedOn.includes(n)).map(nodeName),
  });
  await cleanNodes(spec, runKey, restartedOn);
  await joinWorkers(spec, runKey, head, restartedOn, nodes);
  return {
    nodes,
    restartedOn,
    reason: `Ray restarted on ${restartedOn.map(nodeName).join(', ')} only; kept on ${nodes
      .filter((n) => !restartedOn.includes(n))
      .map(nodeName)
      .join(', ')}`,
  };
}

function adjustHeadArg(spec: Spec, arg: string, head: NodeSpec): string {
  if (!spec.rayHead.isolateNodes) return arg;
  if (arg.startsWith('--dashboard-host=')) return `--dashboard-host=${nodeIp(head)}`;
  if (arg.startsWith('--dashboard-port=')) return `--dashboard-port=${ports(spec, 0).dashboard}`;
  return arg;
}

async function waitFor(
  spec: Spec,
  nodes: NodeSpec[],
  timeoutMs: number,
  onWait?: (missing: NodeSpec[]) => Promise<void>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    const h = await clusterHealthy(spec, nodes);
    if (h.healthy) return;
    // The reason names at most a few nodes: at 1024 nodes the heartbeat and the error stay small.
    last = h.missing.length > 5 ? `${h.missing.length} of ${nodes.length} nodes not alive in Ray yet` : h.reason;
    heartbeat({ waiting: last });
    // What is checked between two polls runs during the pause, not before it.
    await Promise.all([onWait?.(h.missing), sleepMs(1000, activitySignal())]);
  }
  throw ApplicationFailure.retryable(`Ray did not come up: ${last}`, 'RayNotReady');
}

export function clusterActivities(deps: ActivityDeps) {
  async function probeOne(spec: Spec, node: NodeSpec, nonceFile: string, nonce: string): Promise<NodeReport> {
    const executor = executorFor(spec);
    const name = nodeName(node);
    const report: NodeReport = { node: name, reachable: false, problems: [] };
    let text: string;
    try {
      const argv = buildProbeCommand({ dir: spec.storage.baseDir, nonceFile, requiredDir: spec.slime.dir });
      const r = await executor.run(target(node), argv, { timeoutMs: 60_000, env: spec.cluster.env });
      text = r.stdout;
      report.reachable = true;
    } catch (error) {
      report.problems.push(`unreachable: ${(error as Error).message.split('\n')[0]}`);
      return report;
    }
    const probe = parseProbeOutput(text);
    report.memAvailableBytes = probe.memory?.availableBytes;
    report.diskFreeBytes = probe.disk?.availableBytes;
    if (probe.nvidiaSmi !== 'absent') {
      report.gpus = probe.gpus.length;
      report.gpusHealthy = probe.gpuHealth.filter((g) => g.status !== 'unhealthy').length;
      report.gpuProcesses = [...new Set(probe.gpuApps.map((a) => a.pid))];
      if (probe.nvidiaSmi === 'failed') report.problems.push('nvidia-smi failed (driver or GPU fault)');
      for (const g of probe.gpuHealth.filter((x) => x.status === 'unhealthy')) {
        report.problems.push(`GPU ${g.index} unhealthy: ${g.reasons.join(', ')}`);
      }
      if (report.gpus < node.gpus) report.problems.push(`${report.gpus} GPUs visible, the spec says ${node.gpus}`);
    }
    report.problems.push(...probe.problems);
    report.sharedStorage = probe.nonce?.trim() === nonce;
    if (!report.sharedStorage)
      report.problems.push(`${spec.storage.baseDir} is not the shared storage (nonce not seen)`);
    report.slimeDir = probe.requiredDirExists === true;
    if (!report.slimeDir) report.problems.push(`slime directory ${spec.slime.dir} is missing`);
    else report.problems.push(...(await importProblems(spec, node)));
    return report;
  }

  /** Every node (and spare) in parallel: reachable, GPUs, memory, disk, shared baseDir, slime present. */
  async function probeNodes(input: StepInput): Promise<NodeReport[]> {
    const spec = localSpec(input.spec, deps);
    // every node probed, train.py's flags and the inputs fingerprinted on every node: heartbeat while it works
    return withHeartbeats(msToNumber(spec.policies.heartbeatTimeout) / 3, 'probing', () => probeAll(spec, input));
  }

  async function probeAll(spec: Spec, input: StepInput): Promise<NodeReport[]> {
    const executor = executorFor(spec);
    const nonce = randomUUID();
    const nonceFile = join(spec.storage.baseDir, '.keel', `probe-${nonce}`);
    const first = spec.cluster.nodes[0]!;
    await executor.run(target(first), ['mkdir', '-p', join(spec.storage.baseDir, '.keel')]);
    await executor.writeFile(target(first), nonceFile, nonce);
    try {
      // The worker sees baseDir as the nodes do (it casts, checks the conversion and applies retention there).
      await checkWorkerStorageView(spec, nonceFile, nonce, nodeName(first));
      const reports = await onEveryNode(allNodes(spec), 'probed', (n) => probeOne(spec, n, nonceFile, nonce));
      // Before anything is submitted: every train.py flag against the parsers of the slime on the cluster.
      const flags = await checkFlagsOnCluster(spec);
      log.info('train.py flags checked', { against: flags.checkedAgainst, notes: flags.notes });
      const step = spec.steps[input.stepId];
      if (step?.kind === 'probe' && step.inputs) log.info('training inputs checked', await checkInputsOnNodes(spec));
      const bad = reports.filter((r, i) => i < spec.cluster.nodes.length && r.problems.length);
      if (bad.length) {
        throw ApplicationFailure.retryable(
          `node problems:\n${bad.map((r) => `  ${r.node}: ${r.problems.join('; ')}`).join('\n')}`,
          'NodeUnhealthy',
          reports,
        );
      }
      return reports;
    } finally {
      await executor.run(target(first), ['rm', '-f', nonceFile]).catch(() => undefined);
    }
  }

  /** Head first, then workers in parallel; done when the dashboard shows every node alive with all GPUs. */
  async function startRayCluster(input: StepInput): Promise<Record<string, unknown>> {
    const spec = localSpec(input.spec, deps);
    const nodes = spec.cluster.nodes;
    const before = await clusterHealthy(spec, nodes);
    if (before.healthy) return { alreadyHealthy: true, reason: before.reason };
    await cleanNodes(spec, input.runKey, allNodes(spec));
    await bringUp(spec, input.runKey, nodes);
    const after = await clusterHealthy(spec, nodes);
    return { alreadyHealthy: false, reason: after.reason, dashboard: dashboardUrlFor(spec, nodes[0]!) };
  }

  /**
   * After a failure: find the nodes that answer, quarantine the rest, take spares (and nodes added by an operator) to
   * reach the layout's node count, then bring Ray up again with the first healthy node as head. Never shrinks the
   * layout: with too few nodes it reports not ready (the workflow waits, visibly).
   */
  async function healCluster(input: {
    spec: Spec;
    runKey: string;
    extraNodes: ExtraNode[];
    /** wait this long (heartbeating) before probing: the pause between probes while waiting for nodes */
    pauseMs?: number;
    /**
     * heal only what the failure touched on the nodes the failed job ran on (`activeNodes`), restarting Ray nowhere
     * when every one is healthy (absent: bring Ray up again from scratch, as keel 0.2 always did)
     */
    keepRay?: boolean;
    /** the nodes the failed job ran on, head first (absent: the spec's first nodes, as at the run's start) */
    activeNodes?: string[];
  }): Promise<{
    ready: boolean;
    reason: string;
    nodes: string[];
    quarantined: string[];
    /** what was done to Ray (absent when not ready) */
    mode?: HealMode;
    /** the nodes Ray was (re)started on */
    restartedOn?: string[];
  }> {
    const spec = localSpec(input.spec, deps);
    const every = msToNumber(spec.policies.heartbeatTimeout) / 3;
    // The pause is spent here rather than in a workflow timer: a weekend of waiting adds a handful of events an hour.
    await pauseWithHeartbeats(input.pauseMs ?? 0, every);
    return withHeartbeats(every, 'healing', () => heal(spec, input));
  }

  async function heal(
    spec: Spec,
    input: { runKey: string; extraNodes: ExtraNode[]; keepRay?: boolean; activeNodes?: string[] },
  ): Promise<Awaited<ReturnType<typeof healCluster>>> {
    const pool: NodeSpec[] = [
      ...allNodes(spec),
      ...input.extraNodes.map((n) => ({ host: n.host, name: n.name, gpus: n.gpus ?? spec.cluster.gpusPerNode })),
    ];
    const answers = await onEveryNode(pool, 'reached', (n) => reachable(spec, n));
    const healthy = pool.filter((_, i) => answers[i]);
    const quarantined = pool.filter((_, i) => !answers[i]).map(nodeName);
    const needed = spec.distributed.actorNumNodes;
    if (healthy.length < needed) {
      return {
        ready: false,
        reason: `${healthy.length} healthy node(s) of ${needed} needed; down: ${quarantined.join(', ') || 'none'}`,
        nodes: healthy.map(nodeName),
        quarantined,
      };
    }
    const kept = input.keepRay ? knownNodes(spec, input.activeNodes, input.extraNodes) : undefined;
    if (kept?.length === needed) {
      const repaired = await repairCluster(spec, input.runKey, kept, healthy).catch((error: unknown) => {
        log.warn('repairing the Ray cluster failed; bringing it up again', { error: (error as Error).message });
        return undefined;
      });
      if (repaired) {
        return {
          ready: true,
          reason: repaired.reason,
          nodes: repaired.nodes.map(nodeName),
          quarantined,
          mode: repaired.restartedOn.length ? 'repaired' : 'kept',
          restartedOn: repaired.restartedOn.map(nodeName),
        };
      }
    }
    const chosen = healthy.slice(0, needed);
    log.info('healing the cluster', { nodes: chosen.map(nodeName), quarantined });
    await cleanNodes(spec, input.runKey, healthy);
    await bringUp(spec, input.runKey, chosen);
    return {
      ready: true,
      reason: `Ray up on ${chosen.map(nodeName).join(', ')}`,
      nodes: chosen.map(nodeName),
      quarantined,
      mode: 'restarted',
      restartedOn: chosen.map(nodeName),
    };
  }

  /**
   * Cancel: stop every process keel launched for this run (Ray included) on every node of the run -- the spec's nodes
   * and those an operator added to training. Every node is checked for an answer first, all at once; each node that
   * answers gets one command that stops all of the run's launches there at once. A node that does not answer cannot
   * be stopped from here: it is named in the result (and the log) and never delays the others.
   */
  async function stopLaunched(input: {
    spec: Spec;
    runKey: string;
    /** the run's training workflow: the nodes an operator added to it are stopped too */
    trainingWorkflowId?: string;
    extraNodes?: ExtraNode[];
  }): Promise<{ stopped: Record<string, number>; unreachable: string[]; failed: Record<string, string> }> {
    const spec = localSpec(input.spec, deps);
    if (spec.cluster.executor.kind === 'slurm') {
      // Every program is a step of the run's allocation: releasing it (scancel, TERM to every step, KILL after the
      // grace) stops them all at once, without one srun per launch and node here.
      log.info('the Slurm allocation release stops every program of the run');
      return { stopped: {}, unreachable: [], failed: {} };
    }
    const executor = executorFor(spec);
    const added = [...(input.extraNodes ?? []), ...(await addedNodes(input.trainingWorkflowId))];
    const pool: NodeSpec[] = [...allNodes(spec)];
    for (const n of added) {
      const node: NodeSpec = { host: n.host, name: n.name, gpus: n.gpus ?? spec.cluster.gpusPerNode };
      if (!pool.some((p) => nodeName(p) === nodeName(node))) pool.push(node);
    }
    const result = {
      stopped: {} as Record<string, number>,
      unreachable: [] as string[],
      failed: {} as Record<string, string>,
    };
    const every = msToNumber(spec.policies.heartbeatTimeout) / 3;
    await withHeartbeats(every, 'stopping', () =>
      onEveryNode(pool, 'stopped', async (node) => {
        if (!(await reachable(spec, node))) {
          result.unreachable.push(nodeName(node));
          return;
        }
        try {
          result.stopped[nodeName(node)] = (
            await executor.stopUnder(target(node), input.runKey, { graceMs: 3000 })
          ).stopped;
        } catch (error) {
          result.failed[nodeName(node)] = (error as Error).message.split('\n')[0] ?? 'unknown error';
        }
      }),
    );
    if (result.unreachable.length || Object.keys(result.failed).length)
      log.warn('some nodes could not be stopped', { unreachable: result.unreachable, failed: result.failed });
    log.info('stopped what keel launched for the run', { stopped: result.stopped });
    return result;
  }

  /** The nodes an operator added to the run's training (its live state), or none when it cannot be asked. */
  async function addedNodes(trainingWorkflowId: string | undefined): Promise<ExtraNode[]> {
    if (!trainingWorkflowId) return [];
    try {
      const handle = Context.current().client.workflow.getHandle(trainingWorkflowId);
      const state = await Promise.race([
        handle.query(trainingStatusQuery),
        sleepMs(15_000).then(() => {
          throw new Error('no answer in 15 s');
        }),
      ]);
      return addedNodesOf.parse(state).extraNodes ?? [];
    } catch (error) {
      log.info('no added nodes known for the run', { training: trainingWorkflowId, error: (error as Error).message });
      return [];
    }
  }

  return { probeNodes, startRayCluster, healCluster, stopLaunched };
}
