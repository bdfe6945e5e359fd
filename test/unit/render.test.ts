// Golden test: every command, flag and value of the recipe (test/fixtures/deepseek-r1-recipe.txt, a copy of the
// seed recipe) appears in what keel renders and runs for the deepseek-r1-128xh100 preset.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolveSpecOrThrow } from '../../src/spec/index.js';
import {
  castCommand,
  convertCommands,
  downloadCommand,
  MODEL_ARGS,
  rayHeadCommand,
  rayWorkerCommands,
  renderScript,
  trainJob,
  withModelArgs,
} from '../../src/recipe/index.js';

const recipe = readFileSync(new URL('../fixtures/deepseek-r1-recipe.txt', import.meta.url), 'utf8');
const spec = resolveSpecOrThrow({ preset: 'deepseek-r1-128xh100' });
const BASE = spec.storage.baseDir;

/** Flags of a bash array `NAME=( ... )` in the recipe: [[flag, ...values]], comments dropped. */
function recipeGroup(name: string): string[][] {
  const match = new RegExp(`${name}=\\(([\\s\\S]*?)\\n\\)`).exec(recipe);
  assert.ok(match, `recipe has no ${name}`);
  const words = match[1]!
    .split('\n')
    .map((line) => line.replace(/#.*$/, '').replace(/\\$/, '').trim())
    .filter(Boolean)
    .flatMap((line) => line.split(/\s+/));
  return splitFlags(words);
}

function splitFlags(words: string[]): string[][] {
  const flags: string[][] = [];
  for (const w of words) {
    if (w.startsWith('--') && w.includes('=')) flags.push([w.slice(0, w.indexOf('=')), w.slice(w.indexOf('=') + 1)]);
    else if (w.startsWith('--')) flags.push([w]);
    else flags[flags.length - 1]?.push(w);
  }
  return flags;
}

/**
 * The recipe's datasets are node-local (/root/...); keel stages them into shared storage, where slime's upstream
 * script keeps them: the one deliberate difference in the train command (see the dataset test below).
 */
const stagedDatasets: [RegExp, string][] = [
  [/^\/root\/dapo-math-17k\//, '$BASE_DIR/dapo-math-17k/'],
  [/^\/root\/aime-2024\//, '$BASE_DIR/aime-2024/'],
];

/** Values compared as a launch script means them: $BASE_DIR expanded, trailing slashes and number spelling ignored. */
function normalise(value: string): string {
  const staged = stagedDatasets.reduce((v, [from, to]) => v.replace(from, to), value);
  const v = staged.replace(/\$\{?BASE_DIR\}?/g, BASE).replace(/(.)\/+$/, '$1');
  return /^-?\d+(\.\d+)?(e-?\d+)?$/.test(v) ? String(Number(v)) : v;
}

function assertHasFlag(argv: string[], flag: string[], where: string): void {
  const [name, ...values] = flag;
  const flagsInArgv = splitFlags(argv.filter((a) => a !== MODEL_ARGS));
  const expanded = flagsInArgv.filter((f) => f[0] === name);
  assert.ok(expanded.length > 0, `${where}: missing ${name}`);
  assert.ok(
    expanded.some(
      (f) => f.length === values.length + 1 && values.every((v, i) => normalise(f[i + 1]!) === normalise(v)),
    ),
    `${where}: ${name} should be '${values.join(' ')}', rendered: ${expanded.map((f) => f.slice(1).join(' ')).join(' | ')}`,
  );
}

describe('render of the deepseek-r1-128xh100 preset, flag by flag against the recipe', () => {
  const job = trainJob(spec);
  for (const group of [
    'CKPT_ARGS',
    'PERF_ARGS',
    'GRPO_ARGS',
    'OPTIMIZER_ARGS',
    'SGLANG_ARGS',
    'MISC_ARGS',
    'ROLLOUT_ARGS',
    'EVAL_ARGS',
  ]) {
    it(`train.py carries every flag of ${group}`, () => {
      const flags = recipeGroup(group);
      assert.ok(flags.length >= 5, `parsed ${flags.length} flags of ${group}`);
      for (const flag of flags) assertHasFlag(job.argv, flag, group);
    });
  }

  it("train.py carries no flag the recipe does not have, except the three from slime's run script", () => {
    const recipeFlags = new Set(
      [
        'CKPT_ARGS',
        'PERF_ARGS',
        'GRPO_ARGS',
        'OPTIMIZER_ARGS',
        'SGLANG_ARGS',
        'MISC_ARGS',
        'ROLLOUT_ARGS',
        'EVAL_ARGS',
      ].flatMap((g) => recipeGroup(g).map((f) => f[0]!)),
    );
    const extra = splitFlags(job.argv.filter((a) => a !== MODEL_ARGS))
      .map((f) => f[0]!)
      .filter((f) => !recipeFlags.has(f));
    assert.deepEqual(extra, ['--actor-num-nodes', '--actor-num-gpus-per-node', '--colocate']);
    assert.equal(job.argv[0], MODEL_ARGS, 'MODEL_ARGS from the model script comes first');
  });

  it("the job runtime env has the variables of slime's script", () => {
    assert.equal(job.envVars.PYTHONPATH, '/root/Megatron-LM/');
    assert.equal(job.envVars.CUDA_DEVICE_MAX_CONNECTIONS, '1');
    assert.equal(job.envVars.NVSHMEM_DISABLE_NCCL, '1');
    assert.equal(
      job.envVars.LD_LIBRARY_PATH,
      '/usr/local/nvidia/lib:/usr/local/nvidia/lib64:/sgl-workspace/nvshmem/install/lib/',
    );
    assert.equal(job.envVars.PYTHONUNBUFFERED, '1');
    assert.equal(job.envVars.MASTER_ADDR, 'node01');
    assert.match(job.envVars.no_proxy!, /localhost,127\.0\.0\.1,0\.0\.0\.0,node01/);
    assert.match(job.entrypoint, /^cd \/root\/slime && bash -c /);
  });

  it('download: hf download deepseek-ai/DeepSeek-R1 --local-dir $BASE_DIR/DeepSeek-R1', () => {
    const c = downloadCommand(spec);
    assert.deepEqual(c.argv, ['hf', 'download', 'deepseek-ai/DeepSeek-R1', '--local-dir', `${BASE}/DeepSeek-R1`]);
    assert.deepEqual(c.envFromWorker, { HF_TOKEN: 'HF_TOKEN' }, 'the token travels by env var name, never by value');
  });

  it('datasets: dapo-math-17k and aime-2024 staged with hf download --repo-type dataset into $BASE_DIR, read from there', () => {
    assert.deepEqual(downloadCommand(spec, 'prompt-data').argv, [
      ...['hf', 'download', '--repo-type', 'dataset', 'zhuzilin/dapo-math-17k'],
      ...['--local-dir', `${BASE}/dapo-math-17k`],
    ]);
    assert.deepEqual(downloadCommand(spec, 'eval-data').argv, [
      ...['hf', 'download', '--repo-type', 'dataset', 'zhuzilin/aime-2024'],
      ...['--local-dir', `${BASE}/aime-2024`],
    ]);
    assert.deepEqual(spec.steps.inputs, {
      kind: 'probe',
      inputs: true,
      needs: ['convert', 'prompt-data', 'eval-data'],
    });
    assert.deepEqual(spec.steps.train?.needs, ['cluster', 'inputs']);
    const argv = trainJob(spec).argv;
    const after = (flag: string, n = 1) => argv.slice(argv.indexOf(flag) + 1, argv.indexOf(flag) + 1 + n);
    assert.deepEqual(after('--prompt-data'), [`${BASE}/dapo-math-17k/dapo-math-17k.jsonl`]);
    assert.deepEqual(after('--eval-prompt-data', 2), ['aime', `${BASE}/aime-2024/aime-2024.jsonl`]);
    assert.match(
      recipe,
      /--prompt-data \/root\/dapo-math-17k\/dapo-math-17k\.jsonl/,
      'the recipe still reads node-local',
    );
    assert.doesNotMatch(renderScript(spec), /\/root\/(dapo-math-17k|aime-2024)/);
  });

  it("cast: keel's native cast, writing what slime's tool writes; slime's tool one field away", () => {
    assert.deepEqual(spec.steps.cast, {
      kind: 'fp8-cast',
      needs: ['download'],
      engine: 'native',
      likeSlime: true,
      directIo: true,
    });
    assert.match(
      renderScript(spec),
      /\nkeel fp8-cast --in \/data\/keel\/DeepSeek-R1 --out \/data\/keel\/DeepSeek-R1-bf16\/ --like-slime\n/,
    );
    const withSlimeTool = resolveSpecOrThrow({
      preset: 'deepseek-r1-128xh100',
      overrides: { steps: { cast: { engine: 'slime' } } },
    });
    assert.match(renderScript(withSlimeTool), /python3 tools\/fp8_cast_bf16\.py --input-fp8-hf-path/);
  });

  it('cast with engine: slime: python tools/fp8_cast_bf16.py with the recipe paths, in the slime dir', () => {
    const c = castCommand(spec);
    assert.equal(c.cwd, '/root/slime');
    assert.deepEqual(c.argv.slice(1), [
      'tools/fp8_cast_bf16.py',
      '--input-fp8-hf-path',
      `${BASE}/DeepSeek-R1`,
      '--output-bf16-hf-path',
      `${BASE}/DeepSeek-R1-bf16/`,
    ]);
  });

  it('convert: the recipe torchrun on 4 nodes, one node rank each, same master', () => {
    const commands = convertCommands(spec);
    assert.equal(commands.length, 4);
    const torchrunText =
      /PYTHONPATH=\/root\/Megatron-LM\/ torchrun([\s\S]*?)--save \$BASE_DIR\/DeepSeek-R1_torch_dist\//.exec(recipe);
    assert.ok(torchrunText);
    const words = (torchrunText[0] + '').replace(/\\\n/g, ' ').split(/\s+/).filter(Boolean);
    const recipeFlags = splitFlags(
      words.slice(2).filter((w) => w !== '${MODEL_ARGS[@]}' && w !== 'tools/convert_hf_to_torch_dist.py'),
    );
    commands.forEach((c, rank) => {
      assert.equal(c.cwd, '/root/slime');
      assert.equal(c.modelScript, 'scripts/models/deepseek-v3.sh');
      assert.equal(c.env.PYTHONPATH, '/root/Megatron-LM/');
      assert.equal(c.env.NODE_RANK, String(rank));
      assert.equal(c.argv[0], 'torchrun');
      assert.ok(c.argv.includes('tools/convert_hf_to_torch_dist.py'));
      assert.ok(c.argv.indexOf(MODEL_ARGS) === c.argv.indexOf('tools/convert_hf_to_torch_dist.py') + 1);
      for (const flag of recipeFlags) {
        const [name] = flag;
        if (name === '--master-addr') assert.equal(c.argv[c.argv.indexOf(name) + 1], 'node01');
        else if (name === '--node-rank') assert.equal(c.argv[c.argv.indexOf(name) + 1], String(rank));
        else assertHasFlag(c.argv, flag, `convert rank ${rank}`);
      }
    });
  });

  it("ray: the head and worker commands of the recipe and slime's script", () => {
    assert.deepEqual(rayHeadCommand(spec).argv, [
      'ray',
      'start',
      '--head',
      '--node-ip-address',
      'node01',
      '--num-gpus',
      '8',
      '--disable-usage-stats',
      // slime's script binds 0.0.0.0; keel binds the head's own address (the Jobs API has no authentication)
      '--dashboard-host=node01',
      '--dashboard-port=8265',
    ]);
    const wide = resolveSpecOrThrow({
      preset: 'deepseek-r1-128xh100',
      overrides: { rayHead: { dashboardHost: '0.0.0.0' } },
    });
    assert.ok(rayHeadCommand(wide).argv.includes('--dashboard-host=0.0.0.0'), 'one field brings it back');
    assert.equal(trainJob(wide).dashboardUrl, 'http://node01:8265');
    const workers = rayWorkerCommands(spec);
    assert.equal(workers.length, 15);
    assert.deepEqual(workers[0]!.argv, [
      'ray',
      'start',
      '--address=node01:6379',
      '--num-gpus',
      '8',
      '--node-ip-address',
      'node02',
      '--disable-usage-stats',
    ]);
    const recipeWorker =
      /ray start --address=\$\{MASTER_ADDR\}:6379 --num-gpus 8 \\\n\s+--node-ip-address \$\{WORKER_IP\} --disable-usage-stats/;
    assert.match(recipe, recipeWorker, 'the recipe fixture still has the worker command this test mirrors');
  });

  it('the rendered script contains every step command in DAG order', () => {
    const script = renderScript(spec);
    const order = ['hf download', 'keel fp8-cast', 'torchrun', 'ray start --head', 'ray job submit'].map((s) =>
      script.indexOf(s),
    );
    assert.ok(
      order.every((i) => i >= 0),
      `missing a command: ${order}`,
    );
    assert.deepEqual(
      [...order].sort((a, b) => a - b),
      order,
    );
    assert.match(script, /--runtime-env-json=/);
    assert.match(script, /"\$\{MODEL_ARGS\[@\]\}"/);
    assert.equal((script.match(/torchrun/g) ?? []).length, 4);
  });

  it('MODEL_ARGS are expanded on the node by a fixed bash program, with spec values only as arguments', () => {
    const c = convertCommands(spec)[0]!;
    const argv = withModelArgs(c);
    assert.equal(argv[0], 'bash');
    assert.equal(argv[1], '-c');
    assert.ok(!argv[2]!.includes('/root'), 'no spec value inside the bash program');
    assert.equal(argv[4], 'scripts/models/deepseek-v3.sh');
    assert.deepEqual(argv.slice(5), c.argv);
  });
});
