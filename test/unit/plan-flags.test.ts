// Every train.py flag against slime's argument catalogue; extraArgs planned with the values slime will see.
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { plan, type Finding } from '../../src/plan/index.js';
import { loadCatalogue, parseCatalogue } from '../../src/plan/catalogue.js';
import type { ArgCatalogue } from '../../src/plan/flags.js';
import { resolveSpecOrThrow, type PresetName } from '../../src/spec/index.js';

const repo = fileURLToPath(new URL('../..', import.meta.url));
let slime: ArgCatalogue;
before(async () => {
  slime = await loadCatalogue();
});

function planWith(
  overrides: Record<string, unknown>,
  catalogue: ArgCatalogue,
  preset: PresetName = 'deepseek-r1-128xh100',
) {
  return plan(resolveSpecOrThrow({ preset, overrides }), { catalogue });
}
const errors = (findings: Finding[]) => findings.filter((f) => f.severity === 'error');

describe('train.py flags against the shipped catalogue (slime 624b824a, Megatron at its pinned commit)', () => {
  it('knows where it came from', () => {
    assert.equal(slime.sources.slime?.commit, '624b824a898ab0ec1fcb4d373004c7f3852bf515');
    assert.equal(slime.sources.megatron?.commit, '1dcf0dafa884ad52ffb243625717a3471643e087');
    assert.equal(slime.options['--kl-loss-coef']?.type, 'float');
    assert.deepEqual(slime.options['--attention-backend']?.choices, ['flash', 'fused', 'unfused', 'local', 'auto']);
  });
  for (const preset of ['deepseek-r1-128xh100', 'qwen3-4b-1node', 'tiny-local'] as const) {
    it(`${preset}: every rendered flag exists and every value is accepted`, () => {
      const p = planWith({}, slime, preset);
      assert.deepEqual(errors(p.findings), []);
      assert.match(p.flagsCheckedAgainst ?? '', /^slime 624b824a \(megatron 1dcf0daf\)$/);
    });
  }
  it('a misspelt extraArgs flag is an error that suggests the real one', () => {
    const p = planWith({ extraArgs: ['--kl-los-coef', '0.01'] }, slime);
    const [e, ...rest] = errors(p.findings);
    assert.equal(rest.length, 0);
    assert.equal(e?.path, 'extraArgs[0]');
    assert.match(e!.message, /--kl-los-coef is not a flag of slime 624b824a .*silently use the default/);
    assert.equal(e!.fix, 'did you mean --kl-loss-coef?');
  });
  it('rejected values and arities are errors naming the flag', () => {
    const p = planWith(
      { extraArgs: ['--empty-unused-memory-level', '5', '--seed', 'x1', '--distributed-timeout-minutes'] },
      slime,
    );
    const messages = errors(p.findings).map((f) => `${f.path}: ${f.message}`);
    assert.deepEqual(messages, [
      "extraArgs[0]: --empty-unused-memory-level '5' is not one of 0, 1, 2: slime 624b824a (megatron 1dcf0daf) rejects it at start-up",
      "extraArgs[2]: --seed 'x1' is not an integer: slime 624b824a (megatron 1dcf0daf) rejects it at start-up",
      'extraArgs[4]: --distributed-timeout-minutes takes one value, got 0: slime 624b824a (megatron 1dcf0daf) rejects it at start-up',
    ]);
  });
});

describe('extraArgs are planned', () => {
  it('an EP of 24 in extraArgs is refused as a duplicate and planned as 24: an error about experts', () => {
    const p = plan(
      resolveSpecOrThrow({
        preset: 'deepseek-r1-128xh100',
        overrides: { extraArgs: ['--expert-model-parallel-size', '24'] },
      }),
    );
    const e = errors(p.findings);
    const duplicate = e.find((f) => f.path === 'extraArgs[0]');
    assert.match(
      duplicate?.message ?? '',
      /--expert-model-parallel-size 24 duplicates perf\.expertModelParallelSize \(32\)/,
    );
    assert.equal(
      duplicate?.fix,
      'set perf.expertModelParallelSize: 24 and remove --expert-model-parallel-size from extraArgs',
    );
    assert.ok(
      e.some(
        (f) =>
          f.path === 'perf.expertModelParallelSize' && /256 routed experts do not divide over EP 24/.test(f.message),
      ),
      JSON.stringify(e),
    );
    assert.equal(p.layout.ep, 24);
  });
  it('a boolean switch in extraArgs names its field too; flags keel does not type pass through', () => {
    const p = plan(
      resolveSpecOrThrow({ preset: 'qwen3-4b-1node', overrides: { extraArgs: ['--colocate', '--seed', '7'] } }),
    );
    assert.deepEqual(
      errors(p.findings).map((f) => [f.path, f.fix]),
      [['extraArgs[0]', 'set distributed.colocate and remove --colocate from extraArgs']],
    );
  });
});

describe("the stand-in's catalogue, read by the same script", () => {
  const text = execFileSync('python3', [
    `${repo}/scripts/slime_args_catalogue.py`,
    '--slime',
    `${repo}/workloads/tiny`,
    '--megatron',
    `${repo}/workloads/tiny`,
  ]).toString();
  const standIn = parseCatalogue(text, 'stand-in catalogue');
  it('holds the flags the stand-in parses (helpers and loops included)', () => {
    assert.ok(standIn.sources['stand-in']);
    assert.deepEqual(standIn.unresolved, []);
    assert.equal(standIn.options['--colocate']?.nargs, 0);
    assert.equal(standIn.options['--kl-loss-coef']?.type, 'float');
  });
  it('tiny-local passes; a typo does not', () => {
    assert.deepEqual(errors(planWith({}, standIn, 'tiny-local').findings), []);
    const p = planWith({ extraArgs: ['--kl-los-coef', '0.01'] }, standIn, 'tiny-local');
    assert.equal(errors(p.findings)[0]?.fix, 'did you mean --kl-loss-coef?');
  });
});
