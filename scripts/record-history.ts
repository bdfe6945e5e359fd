// Records the workflow histories that the replay test (test/workflow/replay.test.ts) replays against current code.
// Run after a deliberate change of workflow behaviour: `npx tsx scripts/record-history.ts`.
import { writeFile } from 'node:fs/promises';
import proto from '@temporalio/proto';
import { createTestWorker } from '../test/support/pipeline.js';
import { repoRoot, startDevServer } from '../test/support/temporal.js';
import { resolveSpecOrThrow, deepMerge, presets } from '../src/spec/index.js';

const env = await startDevServer();
try {
  const raw = deepMerge(presets['tiny-local'], {
    name: 'replay',
    storage: { baseDir: '/tmp/keel-replay/shared' },
    cluster: { stateDir: '/tmp/keel-replay/nodes/{node}' },
    policies: { initialRetryInterval: '200ms' },
  }) as Record<string, unknown>;
  raw.steps = {
    first: { kind: 'command', argv: ['true'] },
    second: { kind: 'command', argv: ['sh', '-c', 'exit 0'] },
    last: { kind: 'command', needs: ['first', 'second'], argv: ['true'] },
  };
  const spec = resolveSpecOrThrow(raw);
  const worker = await createTestWorker(env, 'keel-record');
  const history = await worker.runUntil(async () => {
    const handle = await env.client.workflow.start('pipeline', {
      taskQueue: 'keel-record',
      workflowId: 'keel-replay',
      args: [spec],
    });
    await handle.result();
    return handle.fetchHistory();
  });
  // Binary protobuf: the JSON helpers trip over two copies of protobufjs in the SDK's dependency tree.
  const file = `${repoRoot}test/histories/pipeline-three-commands.binpb`;
  await writeFile(file, proto.temporal.api.history.v1.History.encode(history).finish());
  console.log(`wrote ${file} (${history.events?.length} events)`);
} finally {
  await env.teardown();
}
