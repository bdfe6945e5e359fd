// The fp8-cast step with `engine: native` on the real dev server and worker: it casts a synthetic checkpoint, resumes
// from the shards an earlier (killed) attempt finished, and is skipped when its output is complete.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startDevServer } from '../support/temporal.js';
import { commandSpec, createTestWorker, tempDir, uniqueQueue } from '../support/pipeline.js';
import {
  fp8Weight,
  plainTensor,
  shardName,
  takesDirectIo,
  writeCheckpoint,
  type Shards,
} from '../support/fp8-checkpoint.js';
import { statusQuery, type PipelineStatus } from '../../workflows/definitions.js';
import { castFp8Checkpoint, checkFp8CastComplete } from '../../src/fp8/index.js';
import { modelPaths } from '../../src/spec/paths.js';
import { describeError } from '../../src/client/index.js';
import type { Spec } from '../../src/spec/index.js';

let env: TestWorkflowEnvironment;
before(async () => {
  env = await startDevServer();
});
after(async () => {
  await env?.teardown();
});

async function runPipeline(spec: Spec, taskQueue: string): Promise<PipelineStatus> {
  const worker = await createTestWorker(env, taskQueue);
  return worker.runUntil(async () => {
    const workflowId = `fp8-native-${Date.now()}`;
    const handle = await env.client.workflow.start('pipeline', { taskQueue, workflowId, args: [spec] });
    await handle.result().catch((error: unknown) => {
      throw new Error(`pipeline ${workflowId} failed: ${describeError(error)}`);
    });
    return handle.query(statusQuery);
  });
}

function checkpointShards(): Shards {
  const shards: Shards = {};
  for (let k = 1; k <= 4; k++)
    shards[shardName(k, 4)] = [
      ...fp8Weight(`model.layers.${k}.mlp.up_proj.weight`, 512, 700),
      plainTensor(`n${k}`, 'BF16', [700]),
    ];
  return shards;
}

describe('fp8-cast step, native engine', { timeout: 300_000 }, () => {
  it('casts, resumes the shards a killed attempt finished, and is skipped once complete', async () => {
    const dir = await tempDir('keel-fp8-step-');
    const spec = commandSpec({
      name: 'fp8-native',
      dir,
      steps: { cast: { kind: 'fp8-cast', engine: 'native', threads: 1 } },
    });
    const paths = modelPaths(spec);
    await writeCheckpoint(paths.download, checkpointShards());
    // An earlier attempt stopped after its first shard (as a killed worker leaves it).
    const controller = new AbortController();
    await castFp8Checkpoint({
      inputDir: paths.download,
      outputDir: paths.bf16,
      threads: 1,
      signal: controller.signal,
      onProgress: (p) => p.shardsDone.length === 1 && controller.abort(),
    }).catch(() => undefined);
    assert.equal((await checkFp8CastComplete(paths.download, paths.bf16)).complete, false);

    const queue = uniqueQueue();
    const first = await runPipeline(spec, queue);
    const cast = first.steps.find((s) => s.id === 'cast')!;
    assert.equal(cast.state, 'succeeded', cast.reason);
    assert.equal(cast.outputs?.engine, 'native');
    assert.equal(cast.outputs?.shards, 4);
    assert.ok((cast.outputs?.skippedShards as number) >= 1, `skipped ${String(cast.outputs?.skippedShards)}`);
    if (takesDirectIo(dir)) assert.ok((cast.outputs?.directBytes as number) > 0, 'no output written with O_DIRECT');
    assert.deepEqual(await checkFp8CastComplete(paths.download, paths.bf16), { complete: true });

    const second = await runPipeline(spec, queue);
    assert.equal(second.steps.find((s) => s.id === 'cast')!.state, 'skipped');
  });
});
