// Orchestration overhead: (1) a chain of trivial steps on the real dev server and worker -- the median gap between a
// step's end and its dependant's start; (2) fan-out: the probe step over 4 vs 32 loopback nodes behind real sshd.
import { startDevServer } from '../support/temporal.js';
import { commandSpec, createTestWorker, tempDir, uniqueQueue } from '../support/pipeline.js';
import { startSshCluster } from '../support/sshd.js';
import { statusQuery } from '../../workflows/definitions.js';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Spec } from '../../src/spec/index.js';

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function runToEnd(env: TestWorkflowEnvironment, spec: Spec, queue: string) {
  const worker = await createTestWorker(env, queue);
  return worker.runUntil(async () => {
    const handle = await env.client.workflow.start('pipeline', {
      taskQueue: queue,
      workflowId: `bench-${Date.now()}`,
      args: [spec],
    });
    await handle.result();
    return { status: await handle.query(statusQuery), history: await handle.fetchHistory() };
  });
}

const eventMs = (e: { eventTime?: { seconds?: unknown; nanos?: number | null } | null }) =>
  Number(e.eventTime?.seconds ?? 0) * 1000 + (e.eventTime?.nanos ?? 0) / 1e6;

async function chainGaps(env: TestWorkflowEnvironment): Promise<number[]> {
  const steps: Record<string, unknown> = {};
  for (let i = 0; i < 12; i++) steps[`s${i}`] = { kind: 'command', argv: ['true'], needs: i ? [`s${i - 1}`] : [] };
  const dir = await tempDir('keel-bench-chain-');
  const { status, history } = await runToEnd(
    env,
    commandSpec({ name: 'bench-chain', dir, steps }),
    uniqueQueue('keel-bench'),
  );
  const durations = status.steps.map((s) => Date.parse(s.endedAt!) - Date.parse(s.startedAt!));
  console.log(`  step duration (check, launch and wait for 'true', check again): median ${median(durations)} ms`);
  // Real time from one activity's completion to the start of the next one (the chain runs one activity at a time):
  // the workflow task that reacts, schedules and dispatches -- including from a step's last activity to its
  // dependant's first.
  const events = history.events ?? [];
  const completed = events.filter((e) => e.activityTaskCompletedEventAttributes).map(eventMs);
  const started = events.filter((e) => e.activityTaskStartedEventAttributes).map(eventMs);
  const gaps: number[] = [];
  for (const end of completed) {
    const next = started.find((t) => t > end);
    if (next !== undefined) gaps.push(next - end);
  }
  return gaps;
}

async function probeSeconds(env: TestWorkflowEnvironment, count: number): Promise<number> {
  const ssh = await startSshCluster({ count, baseAddress: '127.0.1.1' });
  try {
    const dir = await tempDir('keel-bench-probe-');
    const nodes = ssh.nodes.map((n) => ({ host: n.host, port: n.port, gpus: 2 }));
    const spec = commandSpec({
      name: `bench-probe-${count}`,
      dir,
      steps: { probe: { kind: 'probe' } },
      overrides: {
        cluster: {
          nodes,
          spares: [],
          executor: { kind: 'ssh', user: ssh.user, identityFile: ssh.identityFile, knownHostsFile: ssh.knownHostsFile },
        },
        distributed: { actorNumNodes: Math.min(4, count) },
        conversion: { nodes: Math.min(4, count) },
      },
    });
    const { status } = await runToEnd(env, spec, uniqueQueue('keel-bench'));
    const probe = status.steps[0]!;
    if (probe.state !== 'succeeded') throw new Error(`probe ${probe.state}: ${probe.reason}`);
    return (Date.parse(probe.endedAt!) - Date.parse(probe.startedAt!)) / 1000;
  } finally {
    await ssh.stop();
  }
}

export async function run(): Promise<void> {
  const env = await startDevServer();
  try {
    const gaps = await chainGaps(env);
    console.log(
      `  gap from an activity's end to the next activity's start: median ${median(gaps).toFixed(1)} ms (min ${Math.min(...gaps).toFixed(1)}, max ${Math.max(...gaps).toFixed(1)}, ${gaps.length} gaps)`,
    );
    const four = await probeSeconds(env, 4);
    const thirtyTwo = await probeSeconds(env, 32);
    console.log(
      `  probe over 4 ssh nodes: ${four.toFixed(2)} s; over 32: ${thirtyTwo.toFixed(2)} s; ratio 32/4 = ${(thirtyTwo / four).toFixed(2)} (8x the nodes)`,
    );
  } finally {
    await env.teardown();
  }
}
