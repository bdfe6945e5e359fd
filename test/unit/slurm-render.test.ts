// keel render for a Slurm executor: the holder job's sbatch, every command as a step of it (srun --overlap), Ray as
// blocking steps, and every flag of the recipe's train.py unchanged.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parse } from 'shell-quote';
import { resolveSpecInput, resolveSpecOrThrow } from '../../src/spec/index.js';
import { renderScript, trainJob, MODEL_ARGS } from '../../src/recipe/index.js';

const recipe = readFileSync(new URL('../fixtures/deepseek-r1-recipe.txt', import.meta.url), 'utf8');
const groups = [
  'CKPT_ARGS',
  'PERF_ARGS',
  'GRPO_ARGS',
  'OPTIMIZER_ARGS',
  'SGLANG_ARGS',
  'MISC_ARGS',
  'ROLLOUT_ARGS',
  'EVAL_ARGS',
];

/** The recipe's flag names of one bash array (`NAME=( ... )`). */
function recipeFlagNames(name: string): string[] {
  const match = new RegExp(`${name}=\\(([\\s\\S]*?)\\n\\)`).exec(recipe);
  assert.ok(match, `recipe has no ${name}`);
  return match[1]!
    .split('\n')
    .map((line) => line.replace(/#.*$/, '').replace(/\\$/, '').trim())
    .flatMap((line) => line.split(/\s+/))
    .filter((w) => w.startsWith('--'))
    .map((w) => w.split('=')[0]!);
}

const overrides = { cluster: { executor: { kind: 'slurm', partition: 'h100', timeLimit: '48h', account: 'rl' } } };
const slurm = resolveSpecOrThrow({ preset: 'deepseek-r1-128xh100', overrides });
const ssh = resolveSpecOrThrow({ preset: 'deepseek-r1-128xh100' });
const script = renderScript(slurm);
const lines = script.split('\n');

describe('keel render --preset deepseek-r1-128xh100 --set cluster.executor.kind=slurm', () => {
  it('allocates every node with one sbatch holder job named after the run, with the executor fields', () => {
    const sbatch = lines.find((l) => l.startsWith('JOBID=$(sbatch'));
    assert.ok(sbatch, 'an sbatch line');
    for (const flag of ['--parsable', '--job-name=keel-deepseek-r1', '--nodes=16', '--ntasks-per-node=1']) {
      assert.ok(sbatch.includes(flag), `sbatch has ${flag}: ${sbatch}`);
    }
    for (const flag of ['--gres=gpu:8', '--exclusive', '--partition=h100', '--account=rl', '--time=2880']) {
      assert.ok(sbatch.includes(flag), `sbatch has ${flag}: ${sbatch}`);
    }
    assert.match(script, /scontrol show hostnames/);
    assert.match(script, /scancel --signal=TERM --full/);
  });

  it('runs every node command as a step of the allocation, never over ssh', () => {
    assert.doesNotMatch(script, /^ssh /m);
    const steps = lines.filter((l) => l.startsWith('srun '));
    assert.ok(steps.length >= 1 + 4 + 16, `${steps.length} srun steps`);
    for (const step of steps)
      assert.match(
        step,
        /^srun --overlap --jobid="\$JOBID" --nodes=1 --ntasks=1 --nodelist="\$\{NODES\[\d+\]\}" bash -s <<'KEEL'/,
      );
    const rayStarts = lines.filter((l) => l.startsWith('ray start'));
    assert.equal(rayStarts.length, 16);
    for (const r of rayStarts) assert.match(r, / --block$/, 'Ray runs as a blocking step');
  });

  it('train.py carries every flag of the recipe, unchanged from the ssh rendering', () => {
    const trainLine = (text: string) => text.split('\n').find((l) => l.includes('ray job submit'))!;
    assert.equal(trainLine(script), trainLine(renderScript(ssh)), 'the same train command under Slurm and ssh');
    const argv = parse(trainLine(script)).filter((w): w is string => typeof w === 'string');
    for (const group of groups) {
      for (const flag of recipeFlagNames(group)) assert.ok(argv.includes(flag), `${group}: ${flag} rendered`);
    }
    assert.deepEqual(trainJob(slurm).argv, trainJob(ssh).argv);
    assert.equal(trainJob(slurm).argv[0], MODEL_ARGS);
  });

  it('every command of the ssh rendering is in the Slurm rendering, unchanged', () => {
    const commandsOf = (text: string) => {
      const out: string[] = [];
      const all = text.split('\n');
      all.forEach((l, i) => {
        if (/<<'KEEL'/.test(l)) out.push(all[i + 1]!.replace(/ --block$/, ''));
      });
      return out;
    };
    assert.deepEqual(commandsOf(script), commandsOf(renderScript(ssh)));
  });
});

describe('the Slurm executor in the spec', () => {
  it('switching kind drops the fields of the old kind; defaults are filled in', () => {
    assert.equal(slurm.cluster.executor.kind, 'slurm');
    assert.ok(slurm.cluster.executor.kind === 'slurm' && slurm.cluster.executor.exclusive === true);
    assert.ok(!('user' in slurm.cluster.executor));
  });

  it('refuses an extra sbatch argument keel sets itself, naming the field and the fix', () => {
    const r = resolveSpecInput({
      preset: 'tiny-local',
      overrides: { cluster: { executor: { kind: 'slurm', extraArgs: ['--reservation=r1', '--time=10'] } } },
    });
    assert.equal(r.ok, false);
    assert.ok(!r.ok);
    const problem = r.problems.find((p) => p.path.startsWith('cluster.executor.extraArgs'));
    assert.ok(problem, JSON.stringify(r.problems));
    assert.equal(problem.path, 'cluster.executor.extraArgs[1]');
    assert.match(problem.message, /timeLimit/);
  });

  it('refuses a partition with shell characters and a time limit that is no duration', () => {
    const r = resolveSpecInput({
      preset: 'tiny-local',
      overrides: { cluster: { executor: { kind: 'slurm', partition: 'gpu; rm -rf /', timeLimit: '2 hours' } } },
    });
    assert.ok(!r.ok);
    const paths = r.problems.map((p) => p.path);
    assert.ok(paths.includes('cluster.executor.partition'), paths.join(', '));
    assert.ok(paths.includes('cluster.executor.timeLimit'), paths.join(', '));
  });
});
