// Run in a child process by worker-logging.test.ts: the demo's output layer around a real worker. The worker's
// logging is set up exactly as `keel demo` does (demoLogOutput + installWorkerLogging); a workflow whose activity
// fails makes the Temporal SDK log WARN lines; the progress goes to stdout in words, as the demo prints it.
// Env: KEEL_TEST_ADDRESS (the dev server), KEEL_TEST_BUNDLE (./workflows.ts bundled), KEEL_TEST_ROOT (stands for the
// repository root), KEEL_TEST_LOG_FORMAT.
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { demoLogOutput, describeLogOutput } from '../../../src/local/demo-logs.js';
import { installWorkerLogging } from '../../../workers/logging.js';
import * as activities from './activities.js';

const address = process.env.KEEL_TEST_ADDRESS!;
const say = (line: string) => console.log(`[keel demo] ${line}`);
const logs = demoLogOutput({ logFormat: process.env.KEEL_TEST_LOG_FORMAT }, process.env.KEEL_TEST_ROOT!);
say(describeLogOutput(logs.output));
await installWorkerLogging(logs.output, logs.level);

const nativeConnection = await NativeConnection.connect({ address });
const worker = await Worker.create({
  connection: nativeConnection,
  taskQueue: 'keel-logging',
  workflowBundle: { codePath: process.env.KEEL_TEST_BUNDLE! },
  activities,
});
const connection = await Connection.connect({ address });
const client = new Client({ connection });
await worker.runUntil(async () => {
  say('started fails-twice');
  try {
    await client.workflow.execute('failsTwice', { taskQueue: 'keel-logging', workflowId: `fails-twice-${Date.now()}` });
    say('fails-twice: COMPLETED');
  } catch (error) {
    if (!(error instanceof WorkflowFailedError)) throw error;
    let cause: Error = error;
    while (cause.cause instanceof Error) cause = cause.cause;
    say(`fails-twice: FAILED: ${cause.message}`);
  }
});
await connection.close();
await nativeConnection.close();
