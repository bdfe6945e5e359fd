// `keel watch` prints what came from outside keel (a step's failure reason, the run's failure) escaped: a trainer's
// log line quoted in a failure cannot move the operator's cursor or rewrite the terminal.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import type { KeelClient, ProgressEvent, RunStatus } from '../../src/client/index.js';
import { watchRun } from '../../src/cli/watch.js';

test('keel watch escapes control characters in step reasons and in the final failure', async () => {
  const hostile = 'boom\u001b[2J\u001b]0;pwned\u0007\rOK';
  const events: ProgressEvent[] = [
    { type: 'step', step: 'convert', state: 'failed', reason: hostile },
    { type: 'ended', status: { runStatus: 'FAILED', failure: hostile } as unknown as RunStatus },
  ];
  const client = {
    async *watch() {
      yield* events;
    },
  } as unknown as KeelClient;
  const out = new PassThrough();
  let text = '';
  out.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
  const code = await watchRun(client, 'keel-x', out as unknown as NodeJS.WriteStream);
  assert.equal(code, 1);
  for (const c of ['\u001b', '\u0007', '\r']) assert.ok(!text.includes(c), 'no control character reaches the terminal');
  assert.match(text, /step convert: failed \(boom\\u\{1b\}\[2J\\u\{1b\}\]0;pwned\\u\{7\}\\u\{d\}OK\)/);
  assert.match(text, /keel-x: FAILED: boom\\u\{1b\}/);
});
