// End to end: the tiny-local pipeline over ssh on a 4-node local cluster (real sshd, real hf download from the local
// hub, the cast stand-in, a real 4-node torchrun conversion, a real 4-node Ray cluster, the GRPO trainer stand-in as
// a Ray job), through the real worker and dev server. Then a second run skips the preparation steps and a higher
// numRollout continues training from the latest checkpoint.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { statusQuery, trainingStatusQuery } from '../../workflows/definitions.js';
import { describeError } from '../../src/client/index.js';
import { sshUnavailableReason } from '../support/sshd.js';
import { startTinyRig, type TinyRig } from '../support/tiny-pipeline.js';
import type { Spec } from '../../src/spec/index.js';

const skip = sshUnavailableReason();

describe('tiny-local pipeline over ssh on a 4-node local cluster', { skip, timeout: 1_200_000 }, () => {
  let rig: TinyRig;
  before(async () => {
    rig = await startTinyRig({ ssh: true, nodes: 4, portBase: 24100 });
  });
  after(async () => {
    await rig?.stop();
  });

  async function run(spec: Spec, workflowId: string) {
    const handle = await rig.env.client.workflow.start('pipeline', {
      taskQueue: rig.taskQueue,
      workflowId,
      args: [spec],
    });
    await handle.result().catch((error: unknown) => {
      throw new Error(`${workflowId} failed: ${describeError(error)}`);
    });
    const pipeline = await handle.query(statusQuery);
    const training = await rig.env.client.workflow.getHandle(`${workflowId}-training`).query(trainingStatusQuery);
    return { pipeline, training };
  }

  it('runs the whole DAG, then skips preparation and resumes training at tracker + 1', async () => {
    const spec = rig.spec();
    assert.equal(spec.cluster.executor.kind, 'ssh');
    const first = await run(spec, 'keel-tiny-e2e-1');
    for (const step of first.pipeline.steps) assert.equal(step.state, 'succeeded', `${step.id}: ${step.reason}`);
    assert.deepEqual(
      first.training.checkpoints.map((c) => c.iteration),
      [2, 5],
    );
    assert.ok(
      first.training.evals.some((e) => e.rollout === 5),
      'eval logged at the last checkpoint',
    );
    const saveDir = join(spec.storage.baseDir, 'tiny-v3_slime');
    assert.equal((await readFile(join(saveDir, 'latest_checkpointed_iteration.txt'), 'utf8')).trim(), '5');

    const more = rig.spec({ rollout: { numRollout: 9 } });
    const second = await run(more, 'keel-tiny-e2e-2');
    const byId = Object.fromEntries(second.pipeline.steps.map((s) => [s.id, s]));
    for (const id of ['download', 'cast', 'convert']) {
      assert.equal(byId[id]!.state, 'skipped', `${id} should be skipped: ${byId[id]!.reason}`);
      assert.match(byId[id]!.reason!, /outputs already complete/);
    }
    assert.deepEqual(
      second.training.checkpoints.map((c) => c.iteration),
      [8],
    );
    assert.equal(second.training.failures.length, 0, JSON.stringify(second.training.failures));
  });
});
