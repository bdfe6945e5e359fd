// Spec parsing at the edge: presets, overrides, hostfiles, and problems named by their paths.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { loadSpec, parseHostfile, parseSet } from '../../src/spec/load.js';
import { presetNames, resolveSpecInput, suggest } from '../../src/spec/index.js';

const repoRoot = new URL('../..', import.meta.url).pathname;

function problems(raw: unknown): string[] {
  const r = resolveSpecInput(raw);
  assert.equal(r.ok, false, 'expected the spec to be invalid');
  return r.ok ? [] : r.problems.map((p) => `${p.path}: ${p.message}`);
}

describe('presets', () => {
  for (const name of presetNames) {
    it(`${name} resolves to a valid spec`, () => {
      const r = resolveSpecInput({ preset: name });
      assert.ok(r.ok, r.ok ? '' : JSON.stringify(r.problems));
      assert.equal(r.spec.preset, name);
    });
  }
  it('an unknown preset is named with the closest one', () => {
    assert.deepEqual(problems({ preset: 'tiny-locl' }), [
      "preset: unknown preset 'tiny-locl' -- did you mean 'tiny-local'? (presets: deepseek-r1-128xh100, qwen3-4b-1node, tiny-local)",
    ]);
  });
  it('overrides merge into the preset', () => {
    const r = resolveSpecInput({ preset: 'tiny-local', overrides: { rollout: { numRollout: 140 } } });
    assert.ok(r.ok);
    assert.equal(r.spec.rollout.numRollout, 140);
    assert.equal(r.spec.rollout.rolloutBatchSize, 16, 'other fields keep the preset value');
  });
});

describe('invalid specs: every problem named by its path', () => {
  it('wrong types, typos and missing fields in one report', () => {
    const found = problems({
      preset: 'deepseek-r1-128xh100',
      overrides: { rollout: { numRolout: 5, rolloutBatchSize: -1 }, perf: { tensorModelParallelSize: 'eight' } },
    });
    assert.ok(found.includes("rollout.numRolout: unknown field -- did you mean 'numRollout'?"), found.join('\n'));
    assert.ok(
      found.some((p) => p.startsWith('rollout.rolloutBatchSize: Too small')),
      found.join('\n'),
    );
    assert.ok(
      found.some((p) => p.startsWith('perf.tensorModelParallelSize: Invalid input: expected number')),
      found.join('\n'),
    );
    assert.equal(found.length, 3);
  });
  it('a secret value is refused and the fix is named', () => {
    const found = problems({ preset: 'tiny-local', overrides: { model: { hfToken: 'hf_abc' } } });
    assert.deepEqual(found, [
      'model.hfToken: unknown field -- secrets are never spec values: name an env var (e.g. hfTokenEnv: HF_TOKEN)',
    ]);
  });
  it('env var names must be names, not values', () => {
    const found = problems({ preset: 'tiny-local', overrides: { model: { hfTokenEnv: 'hf_abc def' } } });
    assert.deepEqual(found, [
      'model.hfTokenEnv: must be an environment variable name (letters, digits, _), not a value',
    ]);
  });
  it('a step needing an unknown step', () => {
    const found = problems({
      preset: 'tiny-local',
      overrides: { steps: { train: { kind: 'train', needs: ['clustr'] } } },
    });
    assert.deepEqual(found, ["steps.train.needs[0]: unknown step 'clustr' -- did you mean 'cluster'?"]);
  });
  it('a cycle in the DAG', () => {
    const found = problems({
      preset: 'tiny-local',
      overrides: { steps: { probe: { kind: 'probe', needs: ['train'] } } },
    });
    assert.equal(found.length, 1);
    assert.match(found[0]!, /the steps form a cycle: .*probe.*train.*probe|the steps form a cycle/);
  });
  it('an unknown step kind lists the kinds', () => {
    const found = problems({ preset: 'tiny-local', overrides: { steps: { extra: { kind: 'shell' } } } });
    assert.equal(found.length, 1);
    assert.match(found[0]!, /^steps\.extra\.kind: /);
  });
  it('a duplicated node', () => {
    const found = problems({
      preset: 'tiny-local',
      overrides: { cluster: { nodes: [{ host: '127.0.1.1' }, { host: '127.0.1.1' }] } },
    });
    assert.deepEqual(found, ["cluster.nodes[1]: node '127.0.1.1' is listed twice (also at cluster.nodes[0])"]);
  });
  it('a bad duration', () => {
    const found = problems({ preset: 'tiny-local', overrides: { policies: { heartbeatTimeout: '30 seconds' } } });
    assert.deepEqual(found, ["policies.heartbeatTimeout: must be a duration like '30s', '10m', '2h' or '7d'"]);
  });
  it('not an object at all', () => {
    assert.match(problems('deepseek')[0]!, /expected a JSON object/);
  });
});

describe('edge loading', () => {
  it('--set reads values as YAML', () => {
    assert.deepEqual(parseSet('rollout.numRollout=100'), { rollout: { numRollout: 100 } });
    assert.deepEqual(parseSet('perf.sequenceParallel=false'), { perf: { sequenceParallel: false } });
    assert.deepEqual(parseSet('extraArgs=[--foo, "a b"]'), { extraArgs: ['--foo', 'a b'] });
    assert.throws(() => parseSet('novalue'), /path=value/);
    assert.throws(() => parseSet('__proto__.x=1'), /invalid override path/);
  });
  it('MPI hostfiles become nodes', () => {
    assert.deepEqual(parseHostfile('10.0.0.1 slot=8\n# comment\n\n10.0.0.2 slots=4\n10.0.0.3\n'), [
      { host: '10.0.0.1', gpus: 8 },
      { host: '10.0.0.2', gpus: 4 },
      { host: '10.0.0.3', gpus: 8 },
    ]);
  });
  it('a YAML file with a preset, an overlay and --set, and a hostfile', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'keel-spec-'));
    await writeFile(join(dir, 'hosts'), Array.from({ length: 16 }, (_, i) => `10.1.0.${i + 1} slot=8`).join('\n'));
    await writeFile(
      join(dir, 'run.yaml'),
      `preset: deepseek-r1-128xh100\noverrides:\n  cluster:\n    hostfile: ${join(dir, 'hosts')}\n  rollout:\n    numRollout: 200\n`,
    );
    await writeFile(join(dir, 'overlay.yaml'), 'eval:\n  evalInterval: 40\n');
    const r = await loadSpec({
      file: join(dir, 'run.yaml'),
      overlays: [join(dir, 'overlay.yaml')],
      sets: ['ckpt.saveInterval=40'],
    });
    assert.ok(r.ok, r.ok ? '' : JSON.stringify(r.problems));
    assert.equal(r.spec.cluster.nodes.length, 16);
    assert.equal(r.spec.cluster.nodes[3]!.host, '10.1.0.4');
    assert.equal(r.spec.rollout.numRollout, 200);
    assert.equal(r.spec.eval.evalInterval, 40);
    assert.equal(r.spec.ckpt.saveInterval, 40);
  });
  it('suggest finds typos only when close', () => {
    assert.equal(suggest('numRolout', ['numRollout', 'rolloutBatchSize']), 'numRollout');
    assert.equal(suggest('zzz', ['numRollout']), undefined);
  });
});

describe('keel validate (the CLI)', () => {
  it('exits 2 and names every problem by path', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'keel-cli-'));
    const bad = join(dir, 'bad.yaml');
    await writeFile(
      bad,
      'preset: deepseek-r1-128xh100\noverrides:\n  perf:\n    tensorModelParallelSize: 0\n  rollout:\n    globalBatchSze: 128\n',
    );
    const r = await execa('node', ['bin/keel.js', 'validate', bad], { cwd: repoRoot, reject: false });
    assert.equal(r.exitCode, 2);
    assert.match(r.stderr, /perf\.tensorModelParallelSize: Too small/);
    assert.match(r.stderr, /rollout\.globalBatchSze: unknown field -- did you mean 'globalBatchSize'\?/);
  });
  it('exits 2 on planner errors, naming the field and the fix', async () => {
    const r = await execa(
      'node',
      ['bin/keel.js', 'validate', '--preset', 'deepseek-r1-128xh100', '--set', 'grpo.epsClipHigh=0.1'],
      {
        cwd: repoRoot,
        reject: false,
      },
    );
    assert.equal(r.exitCode, 2);
    assert.match(
      r.stderr,
      /grpo\.epsClipHigh: eps-clip-high 0\.1 is below eps-clip 0\.2.*fix: set grpo\.epsClipHigh >= 0\.2/,
    );
  });
  it('plan --json prints the layout figures', async () => {
    const r = await execa('node', ['bin/keel.js', 'plan', '--preset', 'deepseek-r1-128xh100', '--json'], {
      cwd: repoRoot,
    });
    const p = JSON.parse(r.stdout);
    assert.equal(p.layout.worldSize, 128);
    assert.deepEqual(p.layout.stageLayers, [16, 16, 16, 13]);
    assert.equal(p.findings.filter((f: { severity: string }) => f.severity === 'error').length, 0);
  });
});
