// `npm run bench:faults`: a scaled soak on the local cluster -- 200 rollouts, checkpoints every 10, and three failures
// of different kinds injected while training runs (a lost worker node, a hung trainer, a crashed trainer). Prints
// the effective training time ratio (time on rollouts that were kept / wall time), and per failure: detection
// latency, recovery time and rollouts lost.
import { readFile } from 'node:fs/promises';
import { trainingStatusQuery, type TrainingStatus } from '../../workflows/definitions.js';
import { nodeProcesses } from '../../src/local/node-processes.js';
import { describeError } from '../../src/client/index.js';
import { eventually } from '../support/pipeline.js';
import { startTinyRig } from '../support/tiny-pipeline.js';

const NUM_ROLLOUT = 200;
const SAVE_INTERVAL = 10;

async function trainerPids(stateDir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const pid of await nodeProcesses(stateDir)) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes('train.py') && !cmdline.startsWith('bash')) pids.push(pid);
  }
  return pids;
}

export async function run(): Promise<void> {
  const rig = await startTinyRig({ ssh: true, nodes: 4, spares: 1, portBase: 27100 });
  try {
    const spec = rig.spec({
      name: 'soak',
      model: { saveDir: 'save-soak/' },
      rollout: { numRollout: NUM_ROLLOUT },
      ckpt: { saveInterval: SAVE_INTERVAL },
      eval: { evalInterval: SAVE_INTERVAL },
      policies: {
        hang: { startup: '3m', rollout: '20s', checkpointSave: '45s' },
        crashLoop: { maxRestarts: 5, window: '1h' },
      },
    });
    const workflowId = 'keel-soak';
    const started = Date.now();
    const handle = await rig.env.client.workflow.start('pipeline', {
      taskQueue: rig.taskQueue,
      workflowId,
      args: [spec],
    });
    const training = () => rig.env.client.workflow.getHandle(`${workflowId}-training`).query(trainingStatusQuery);
    const reach = (rollout: number) =>
      eventually(
        async () => (((await training().catch(() => undefined))?.lastRollout ?? -1) >= rollout ? true : undefined),
        1_800_000,
        `rollout ${rollout}`,
      );
    let trainingStarted = 0;

    await reach(0);
    trainingStarted = Date.now();
    await reach(45);
    console.log('  injecting: kill worker node 127.0.1.3');
    await rig.cluster.killNode(2);
    await reach(95);
    console.log('  injecting: hang the trainer (SIGSTOP)');
    const head = (await training()).activeNodes?.[0] ?? '127.0.1.1';
    const headNode = [...rig.cluster.nodes, ...rig.cluster.spares].find((n) => n.host === head)!;
    for (const pid of await trainerPids(headNode.stateDir)) process.kill(pid, 'SIGSTOP');
    await reach(145);
    console.log('  injecting: crash the trainer (SIGKILL)');
    const head2 = (await training()).activeNodes?.[0] ?? '127.0.1.1';
    const headNode2 = [...rig.cluster.nodes, ...rig.cluster.spares].find((n) => n.host === head2)!;
    for (const pid of await trainerPids(headNode2.stateDir)) process.kill(pid, 'SIGKILL');

    await handle.result().catch((error: unknown) => {
      throw new Error(`soak failed: ${describeError(error)}`);
    });
    const ended = Date.now();
    const status: TrainingStatus = await training();
    const wall = (ended - trainingStarted) / 1000;
    const lost = status.failures.map((f) => Math.max(0, (f.lastRollout ?? 0) - (f.tracker ?? -1)));
    // Time on kept rollouts: the healthy rollout pace (rollouts before the first failure) times the rollouts kept.
    const firstFailureAt = status.failures[0]
      ? Date.parse(status.failures[0].lastProgressAt ?? status.failures[0].at)
      : ended;
    const pace =
      (firstFailureAt - trainingStarted) / 1000 / Math.max(1, (status.failures[0]?.lastRollout ?? NUM_ROLLOUT - 1) + 1);
    const kept = NUM_ROLLOUT * pace;
    console.log(
      `  ${NUM_ROLLOUT} rollouts, checkpoint every ${SAVE_INTERVAL}; pipeline wall ${((ended - started) / 1000).toFixed(0)} s, training wall ${wall.toFixed(0)} s`,
    );
    console.log(
      `  healthy pace ${pace.toFixed(2)} s/rollout; effective training time ratio ${(kept / wall).toFixed(2)} (time on kept rollouts / training wall time)`,
    );
    console.log('  failure          detection   recovery   rollouts lost');
    status.failures.forEach((f, i) => {
      const detection =
        f.detectedAt && f.lastProgressAt ? (Date.parse(f.detectedAt) - Date.parse(f.lastProgressAt)) / 1000 : NaN;
      const recovery = f.recoveredAt ? (Date.parse(f.recoveredAt) - Date.parse(f.at)) / 1000 : NaN;
      console.log(
        `  ${f.kind.padEnd(16)} ${detection.toFixed(1).padStart(7)} s ${recovery.toFixed(1).padStart(8)} s ${String(lost[i]).padStart(10)}`,
      );
    });
    console.log(
      '  (detection: from the last progress seen to the failure being classified; recovery: from then to the first rollout of the resubmitted job)',
    );
  } finally {
    await rig.stop();
  }
}
