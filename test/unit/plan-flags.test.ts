// Every train.py flag against slime's argument catalogue; extraArgs planned with the values slime will see.
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { plan, type Finding } from '../../src/plan/index.js';
import { loadCatalogue, parseCatalogue, withShippedSglang } from '../../src/plan/catalogue.js';
import { trainFlags, type ArgCatalogue } from '../../src/plan/flags.js';
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
      assert.match(
        p.flagsCheckedAgainst ?? '',
        /^slime 624b824a \(megatron 1dcf0daf, sglang 0\.5\.15\.post1, sglang-router 0\.3\.2\)$/,
      );
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
      "extraArgs[0]: --empty-unused-memory-level '5' is not one of 0, 1, 2: slime 624b824a (megatron 1dcf0daf, sglang 0.5.15.post1, sglang-router 0.3.2) rejects it at start-up",
      "extraArgs[2]: --seed 'x1' is not an integer: slime 624b824a (megatron 1dcf0daf, sglang 0.5.15.post1, sglang-router 0.3.2) rejects it at start-up",
      'extraArgs[4]: --distributed-timeout-minutes takes one value, got 0: slime 624b824a (megatron 1dcf0daf, sglang 0.5.15.post1, sglang-router 0.3.2) rejects it at start-up',
    ]);
  });
});

describe("SGLang's flags as slime parses them (a parser of their own, abbreviations allowed)", () => {
  it('a misspelt --sglang-* flag is an error that suggests the real one', () => {
    const p = planWith({ extraArgs: ['--sglang-mem-fraction-statc', '0.7'] }, slime);
    const [e, ...rest] = errors(p.findings);
    assert.equal(rest.length, 0);
    assert.match(e!.message, /^--sglang-mem-fraction-statc is not a flag of slime 624b824a/);
    assert.equal(e!.fix, 'did you mean --sglang-mem-fraction-static?');
  });
  it("the router's flags (--router-*) are flags", () => {
    const p = planWith({ extraArgs: ['--router-balance-abs-threshold', '10'] }, slime);
    assert.deepEqual(errors(p.findings), []);
  });
  it("R1's own --sglang-* flags are checked, values included", () => {
    const p = planWith({}, slime);
    assert.equal(p.findings.filter((f) => /not checked here/.test(f.message)).length, 0);
    const r1 = trainFlags(resolveSpecOrThrow({ preset: 'deepseek-r1-128xh100', overrides: {} }), slime);
    const sglang = r1.filter((f) => f.flag.startsWith('--sglang-'));
    assert.ok(sglang.length >= 8);
    for (const { flag } of sglang) assert.equal(slime.options[flag]?.parser, 'sglang', flag);
    const bad = planWith(
      { extraArgs: ['--sglang-cuda-graph-max-bs', 'many', '--sglang-dsa-prefill-backend', 'x'] },
      slime,
    );
    assert.deepEqual(
      errors(bad.findings).map((f) => f.message.split(':')[0]),
      [
        "--sglang-cuda-graph-max-bs 'many' is not an integer",
        "--sglang-dsa-prefill-backend 'x' is not one of flashmla_sparse, flashmla_kv, flashmla_auto, fa3, tilelang, aiter, trtllm",
      ],
    );
  });
  it('a unique prefix is accepted (noted); a prefix of several stops slime ("ambiguous option")', () => {
    const ok = planWith({ extraArgs: ['--sglang-mem-frac', '0.7'] }, slime);
    assert.deepEqual(errors(ok.findings), []);
    assert.ok(ok.findings.some((f) => f.message.includes('--sglang-mem-frac (--sglang-mem-fraction-static)')));
    const [e] = errors(planWith({ extraArgs: ['--sglang-enable-dp'] }, slime).findings);
    assert.match(e!.message, /--sglang-enable-dp is a prefix of 3 flags of slime's SGLang parser/);
  });
  it('Megatron and slime flags are not abbreviated (allow_abbrev=False there)', () => {
    const [e] = errors(planWith({ extraArgs: ['--kl-loss-co', '0.01'] }, slime).findings);
    assert.equal(e?.fix, 'did you mean --kl-loss-coef?');
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

describe("the shipped catalogue chosen by the slime commit the probe finds (when the node's Python finds no sglang)", () => {
  const withoutSglang = (commit: string): ArgCatalogue => ({
    ...slime,
    sglangIncluded: false,
    sources: { slime: { ...slime.sources.slime!, commit } },
    options: Object.fromEntries(Object.entries(slime.options).filter(([, o]) => o.src !== 'sglang')),
  });
  it('the same commit: SGLang flags from the shipped catalogue, with a note', async () => {
    const { catalogue, notes } = await withShippedSglang(withoutSglang(slime.sources.slime!.commit!));
    assert.equal(catalogue.options['--sglang-mem-fraction-static']?.type, 'float');
    assert.match(notes[0]!, /checked against the catalogue keel ships for slime 624b824a/);
  });
  it('a commit keel ships nothing for: a clear note naming the commit and the script', async () => {
    const { catalogue, notes } = await withShippedSglang(withoutSglang('0123456789abcdef0123456789abcdef01234567'));
    assert.equal(catalogue.options['--sglang-mem-fraction-static'], undefined);
    assert.match(
      notes[0]!,
      /keel ships no catalogue for slime 01234567 \(it ships: 624b824a\): SGLang's flags are not checked; make one with scripts\/make-slime-catalogue\.sh 0123456789abcdef/,
    );
    const p = planWith({ extraArgs: ['--sglang-mem-fraction-statc', '0.7'] }, catalogue);
    assert.ok(p.findings.some((f) => /not checked here/.test(f.message)));
  });
});
