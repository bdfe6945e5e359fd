// Using keel from code: start a run, follow its progress, steer it, read its final status.
// Run against a server with a worker: `npx tsx examples/start-and-watch.ts` (KEEL_TEMPORAL_ADDRESS, KEEL_TASK_QUEUE).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KeelClient } from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'keel-example-'));
const client = await KeelClient.connect();
try {
  // A preset with overrides, exactly what the Web UI's Start Workflow form takes. Here the preset's DAG is replaced
  // (null removes a step) by two small commands on local nodes, so the example runs anywhere.
  const { workflowId } = await client.start({
    preset: 'tiny-local',
    overrides: {
      name: `example-${Date.now() % 100000}`,
      storage: { baseDir: join(dir, 'shared') },
      cluster: { stateDir: join(dir, 'nodes', '{node}') },
      steps: {
        probe: null,
        download: null,
        cast: null,
        convert: null,
        cluster: null,
        data: null,
        inputs: null,
        train: null,
        hello: { kind: 'command', argv: ['sh', '-c', 'echo hello from keel'] },
        after: { kind: 'command', needs: ['hello'], argv: ['sleep', '1'] },
      },
    },
  });
  console.log(`started ${workflowId}`);
  for await (const event of client.watch(workflowId, { intervalMs: 300 })) {
    if (event.type === 'step') console.log(`step ${event.step}: ${event.state}`);
    if (event.type === 'ended') console.log(`ended: ${event.status.runStatus}`);
  }
  const status = await client.status(workflowId);
  console.log(`attempts: ${status.pipeline?.steps.map((s) => `${s.id}=${s.attempts}`).join(' ')}`);
} finally {
  await client.close();
}
