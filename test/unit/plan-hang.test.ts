// Hang timeouts against the phases they guard: the R1 preset's own (derived from its reliability estimates) plan
// clean; one shorter than its phase is a warning naming the field and the estimate; the CLI says it too.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execa } from 'execa';
import { plan } from '../../src/plan/index.js';
import { hangFromEstimates } from '../../src/spec/hang.js';
import { resolveSpecOrThrow } from '../../src/spec/index.js';

const repoRoot = new URL('../..', import.meta.url).pathname;
const r1 = (overrides: Record<string, unknown> = {}) =>
  plan(resolveSpecOrThrow({ preset: 'deepseek-r1-128xh100', overrides }));
const hangFindings = (p: ReturnType<typeof plan>) => p.findings.filter((f) => f.path.startsWith('policies.hang'));

describe('hang timeouts against their phases', () => {
  it("R1's timeouts are twice its estimated phases, and plan with no hang finding", () => {
    // restart 25 min + the first eval and rollout 20 min = 45 min of start-up; rollout 20 min; save 16 min
    assert.deepEqual(hangFromEstimates({ restartTime: '25m', rolloutTime: '20m', checkpointSaveTime: '16m' }), {
      startup: '90m',
      rollout: '40m',
      eval: '40m',
      checkpointSave: '32m',
    });
    const p = r1();
    assert.deepEqual(hangFindings(p), []);
  });

  it('a start-up timeout shorter than the expected restart and first rollout is a warning naming both', () => {
    const [finding, ...rest] = hangFindings(r1({ policies: { hang: { startup: '20m' } } }));
    assert.equal(rest.length, 0);
    assert.equal(finding?.severity, 'warning');
    assert.equal(finding?.path, 'policies.hang.startup');
    assert.match(finding!.message, /policies\.hang\.startup 20m is shorter than the start-up it guards \(45 min/);
    assert.match(finding!.message, /expected restart 25m \(reliability\.restartTime\)/);
    assert.match(finding!.fix!, /at least 90m/);
  });

  it('every phase is checked, each under its own field', () => {
    const p = r1({ policies: { hang: { startup: '30m', rollout: '15m', eval: '10m', checkpointSave: '10m' } } });
    const paths = hangFindings(p).map((f) => f.path);
    assert.deepEqual(paths.sort(), [
      'policies.hang.checkpointSave',
      'policies.hang.eval',
      'policies.hang.rollout',
      'policies.hang.startup',
    ]);
  });

  it('keel plan prints it', async () => {
    const out = await execa(
      'npx',
      ['tsx', 'src/cli/main.ts', 'plan', '--preset', 'deepseek-r1-128xh100', '--set', 'policies.hang.startup=20m'],
      { cwd: repoRoot, reject: false },
    );
    assert.match(out.stdout + out.stderr, /WARNING policies\.hang\.startup: .*expected restart 25m/);
  });
});
