// `npm run bench:learning`: does the tiny-local pipeline really train? For each seed (KEEL_LEARNING_SEEDS, default
// "0 1 2": the tiny model generator's seed, which picks its pretraining data and init, and the trainer's --seed), run
// the tiny-local preset as it ships (100 rollouts, checkpoint and eval every 20) on a fresh local cluster and print
// the eval score at rollout 0 (before training) and at the last checkpoint, side by side, with the margin, and checks
// that every seed gains at least MIN_MARGIN (exit code 1 otherwise).
// KEEL_LEARNING_LR=<lr> runs the same with another learning rate.
import { describeError } from '../../src/client/index.js';
import { trainingStatusQuery } from '../../workflows/definitions.js';
import { presets } from '../../src/spec/index.js';
import { startTinyRig } from '../support/tiny-pipeline.js';

const tiny = presets['tiny-local'];
/** The least gain in eval score, last checkpoint over rollout 0, that counts as visibly learning. */
const MIN_MARGIN = 0.1;

export async function run(): Promise<void> {
  const seeds = (process.env.KEEL_LEARNING_SEEDS ?? '0 1 2').split(/\s+/).filter(Boolean).map(Number);
  const rows: { seed: number; before: number; after: number; best: number; seconds: number }[] = [];
  for (const seed of seeds) {
    const rig = await startTinyRig({ nodes: 4, portBase: 29100, seed });
    try {
      const workflowId = `learning-seed${seed}`;
      // The preset's own training settings, not the rig's scaled-down ones.
      const spec = rig.spec({
        name: workflowId,
        rollout: { numRollout: tiny.rollout.numRollout },
        ckpt: { saveInterval: tiny.ckpt.saveInterval },
        eval: { evalInterval: tiny.eval.evalInterval },
        policies: { hang: tiny.policies?.hang },
        extraArgs: ['--seed', String(1234 + seed)],
        // KEEL_LEARNING_LR tries another learning rate than the preset's
        ...(process.env.KEEL_LEARNING_LR ? { optimizer: { lr: Number(process.env.KEEL_LEARNING_LR) } } : {}),
      });
      const started = Date.now();
      const handle = await rig.env.client.workflow.start('pipeline', {
        taskQueue: rig.taskQueue,
        workflowId,
        args: [spec],
      });
      await handle.result().catch((error: unknown) => {
        throw new Error(`seed ${seed}: run failed: ${describeError(error)}`);
      });
      const training = await rig.env.client.workflow.getHandle(`${workflowId}-training`).query(trainingStatusQuery);
      const before = training.evals.find((e) => e.rollout === 0)?.score;
      const last = training.checkpoints.at(-1);
      if (before === undefined || last?.evalScore === undefined) {
        throw new Error(
          `seed ${seed}: no eval at rollout 0 or at the last checkpoint: ${JSON.stringify(training.evals)}`,
        );
      }
      const best = Math.max(...training.evals.map((e) => e.score));
      rows.push({ seed, before, after: last.evalScore, best, seconds: (Date.now() - started) / 1000 });
      console.log(
        `  seed ${seed}: evals ${training.evals.map((e) => `${e.rollout}:${e.score.toFixed(3)}`).join(' ')}` +
          ` (${((Date.now() - started) / 1000).toFixed(0)} s)`,
      );
    } finally {
      await rig.stop();
    }
  }
  console.log('  seed  eval@0  eval@last-ckpt  margin  best');
  for (const r of rows) {
    console.log(
      `  ${String(r.seed).padEnd(5)} ${r.before.toFixed(3)}   ${r.after.toFixed(3)}           ${(r.after - r.before >= 0 ? '+' : '') + (r.after - r.before).toFixed(3)}  ${r.best.toFixed(3)}`,
    );
  }
  const margins = rows.map((r) => r.after - r.before);
  console.log(
    `  smallest margin over ${rows.length} seed(s): ${Math.min(...margins).toFixed(3)}; mean ${(margins.reduce((a, b) => a + b, 0) / margins.length).toFixed(3)}`,
  );
  // The demo must visibly learn: on every seed, the last checkpoint's eval at least MIN_MARGIN above rollout 0's.
  const short = rows.filter((r) => r.after - r.before < MIN_MARGIN);
  console.log(
    `  check: eval@last-ckpt - eval@0 >= +${MIN_MARGIN.toFixed(3)} on every seed: ` +
      (short.length === 0 ? 'yes' : `NO (seed ${short.map((r) => r.seed).join(', ')})`),
  );
  if (short.length > 0) process.exitCode = 1;
}
