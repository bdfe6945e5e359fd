// Where `keel demo` sends the control worker's logs (src/local/demo-logs.ts): a file by default, the terminal only
// when asked, and the level that goes with each.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { demoLogOutput, describeLogOutput } from '../../src/local/demo-logs.js';

const root = '/srv/keel';
const at = new Date('2026-03-01T04:05:06.789Z');

describe('demo log output', () => {
  const saved = process.env.KEEL_LOG_LEVEL;
  const withLevel = <T>(level: string | undefined, fn: () => T): T => {
    if (level === undefined) delete process.env.KEEL_LOG_LEVEL;
    else process.env.KEEL_LOG_LEVEL = level;
    try {
      return fn();
    } finally {
      if (saved === undefined) delete process.env.KEEL_LOG_LEVEL;
      else process.env.KEEL_LOG_LEVEL = saved;
    }
  };

  it('by default: JSON lines at level info in a time-stamped file under .keel/logs, path in the sentence', () => {
    const { output, level } = withLevel(undefined, () => demoLogOutput({}, root, at));
    const file = join(root, '.keel', 'logs', 'demo-2026-03-01T04-05-06-789Z.log');
    assert.deepEqual(output, { format: 'json', destination: file });
    assert.equal(level, 'info');
    assert.equal(describeLogOutput(output), `worker logs (JSON lines): ${file}`);
  });

  it('--log-file: that file (relative to the working directory), JSON unless --log-format says otherwise', () => {
    const { output } = withLevel(undefined, () => demoLogOutput({ logFile: 'w.log' }, root, at));
    assert.deepEqual(output, { format: 'json', destination: join(process.cwd(), 'w.log') });
    const pretty = withLevel(undefined, () => demoLogOutput({ logFile: '/x/w.log', logFormat: 'pretty' }, root));
    assert.deepEqual(pretty.output, { format: 'pretty', destination: '/x/w.log' });
    assert.equal(describeLogOutput(pretty.output), 'worker logs (text): /x/w.log');
  });

  it('--log-format alone: on stderr at level warn; KEEL_LOG_LEVEL overrides the level', () => {
    const pretty = withLevel(undefined, () => demoLogOutput({ logFormat: 'pretty' }, root));
    assert.deepEqual(pretty, { output: { format: 'pretty', destination: 2 }, level: 'warn' });
    assert.equal(describeLogOutput(pretty.output), 'worker logs: pretty-printed on stderr');
    const json = withLevel('debug', () => demoLogOutput({ logFormat: 'json' }, root));
    assert.deepEqual(json, { output: { format: 'json', destination: 2 }, level: 'debug' });
  });

  it('refuses an unknown format, naming the flag and the choices', () => {
    assert.throws(() => demoLogOutput({ logFormat: 'yaml' }, root), /--log-format yaml: expected one of json, pretty/);
  });
});
