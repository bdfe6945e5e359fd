// `npm run bench:faults`: a scaled soak on the local cluster -- 200 rollouts, checkpoints every 10, and three failures
// of different kinds injected while training runs (a lost worker node, a hung trainer, a crashed trainer). Prints
// the effective training time ratio (time on rollouts that were kept / wall time, with and without the trainer's
// start-up), and per failure: detection, keel's share of the recovery, the trainer's start-up and rollouts lost.
import { trainingStatusQuery, type TrainingStatus } from '../../workflows/definitions.js';
import { describeError } from '../../src/client/index.js';
import { formatTotals, recoveryTotals, restartAccounts } from '../../src/progress/recovery.js';
import { eventually } from '../support/pipeline.js';
import { startTinyRig, trainerPids } from '../support/tiny-pipeline.js';

const NUM_ROLLOUT = 200;
const SAVE_INTERVAL = 10;

const fmt = (seconds: number | undefined) => `${seconds === undefined ? '-' : seconds.toFixed(1)} s`.padStart(9);

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
    const totals = recoveryTotals(status, new Date(trainingStarted).toISOString(), new Date(ended).toISOString());
    console.log(
      `  ${NUM_ROLLOUT} rollouts, checkpoint every ${SAVE_INTERVAL}; pipeline wall ${((ended - started) / 1000).toFixed(0)} s, training wall ${wall.toFixed(0)} s`,
    );
    console.log(
      `  healthy pace ${totals.pace?.toFixed(2) ?? '-'} s/rollout (median between checkpoints with no failure); ` +
        `effective training time ratio ${totals.ettr?.toFixed(2) ?? '-'}, ` +
        `${totals.ettrExcludingStartup?.toFixed(2) ?? '-'} excluding the trainer's start-up`,
    );
    console.log('  failure        detection   keel (goal)      trainer start-up   rollouts lost   Ray');
    for (const r of restartAccounts(status)) {
      const goal = r.kind === 'node-lost' || r.kind === 'head-lost' ? 20 : 10;
      const met = r.keel === undefined ? '' : r.keel <= goal ? ' ok' : ' MISSED';
      console.log(
        `  ${r.kind.padEnd(14)} ${fmt(r.detection)} ${fmt(r.keel)} (<= ${goal} s${met}) ${fmt(r.trainerStartup).padStart(12)} ` +
          `${String(r.rolloutsLost).padStart(15)}   ${r.heal ?? '-'}${r.restartedOn?.length ? ` on ${r.restartedOn.join(', ')}` : ''}`,
      );
    }
    console.log(`  ${formatTotals(totals)}`);
    console.log(
      "  (detection: last progress seen -> failure classified; keel: -> the resubmitted job's driver running " +
        '(classify, stop, heal, resubmit); trainer start-up: -> its first rollout; src/progress/recovery.ts)',
    );
  } finally {
    await rig.stop();
  }
}
