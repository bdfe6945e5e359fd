// Helpers for the tests of the tiny stand-ins in workloads/tiny: the torch_dist converter (run by the real
// torchrun) and the GRPO trainer (a real Ray job). They build real inputs with the real Python programs.
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { quote } from 'shell-quote';
import { repoRoot, venvBin } from './ray-cluster.js';

export const tinyDir = path.join(repoRoot, 'workloads', 'tiny');
export const python = path.join(venvBin, 'python');
export const torchrun = path.join(venvBin, 'torchrun');
export const converterScript = path.join(tinyDir, 'tools', 'convert_hf_to_torch_dist.py');
export const trainScript = path.join(tinyDir, 'train.py');
export const dynamicSamplingFilter = 'slime.rollout.filter_hub.dynamic_sampling_filters.check_reward_nonzero_std';

export interface ProcessResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run a program to its end, collecting its output; the child is killed if the test gives up first. */
export async function run(
  argv: string[],
  options: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {},
): Promise<ProcessResult> {
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: options.cwd ?? repoRoot,
    env: { ...process.env, PATH: `${venvBin}:${process.env.PATH ?? ''}`, PYTHONDONTWRITEBYTECODE: '1', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
  try {
    return await new Promise<ProcessResult>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    });
  } finally {
    clearTimeout(timer);
  }
}

/** Run a Python snippet with workloads/tiny importable; throws with its stderr when it fails. */
export async function runPython(code: string, args: string[] = []): Promise<string> {
  const result = await run([python, '-c', code, ...args], { env: { PYTHONPATH: tinyDir } });
  if (result.code !== 0) throw new Error(`python snippet failed (${result.code}):\n${result.stderr.slice(-3000)}`);
  return result.stdout;
}

/** MODEL_ARGS as scripts/models/tiny-v3.sh defines them (sourced by bash, the way slime's scripts use them). */
export async function tinyModelArgs(): Promise<string[]> {
  const script = path.join(tinyDir, 'scripts', 'models', 'tiny-v3.sh');
  const result = await run(['bash', '-c', 'source "$1" && printf "%s\\0" "${MODEL_ARGS[@]}"', 'bash', script]);
  if (result.code !== 0) throw new Error(`sourcing tiny-v3.sh failed: ${result.stderr}`);
  return result.stdout.split('\0').filter((arg) => arg !== '');
}

/** A freshly initialised tiny model saved as a BF16 Hugging Face directory (what the FP8 -> BF16 cast produces). */
export async function writeRandomBf16Model(dir: string, seed = 0): Promise<void> {
  await runPython(
    [
      'import sys, torch, tiny_model, toy_task',
      'torch.manual_seed(int(sys.argv[2]))',
      'cfg = tiny_model.TinyConfig(vocab_size=toy_task.VOCAB_SIZE)',
      "tiny_model.save_hf_dir(tiny_model.TinyMoE(cfg), cfg, sys.argv[1], dtype='bfloat16', shards=3)",
    ].join('\n'),
    [dir, String(seed)],
  );
}

/**
 * A tiny model pretrained for `seconds` on the toy addition task (a few percent right at temperature 1, so that
 * dynamic sampling finds groups with mixed rewards), saved as a BF16 HF directory with `data/{train,eval}.jsonl`.
 */
export async function pretrainTinyModel(dir: string, seconds: number, seed = 0): Promise<void> {
  await runPython(
    [
      'import sys, time, random, torch, tiny_model, toy_task as tt',
      'from pathlib import Path',
      'out, seconds, seed = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])',
      'torch.manual_seed(seed); torch.set_num_threads(1); rng = random.Random(seed)',
      'cfg = tiny_model.TinyConfig(vocab_size=tt.VOCAB_SIZE)',
      'model = tiny_model.TinyMoE(cfg)',
      'train, evals = tt.make_splits(2000, 100, seed)',
      "pairs = tt.pretraining_pairs({r['prompt'] for r in evals})",
      'opt = torch.optim.AdamW(model.parameters(), lr=3e-3)',
      'start = time.monotonic()',
      'while time.monotonic() - start < seconds:',
      '    rows, starts = [], []',
      '    for a, b in rng.sample(pairs, 128):',
      '        prompt = [tt.BOS] + tt.encode(tt.make_prompt(a, b))',
      '        rows.append(prompt + tt.encode(tt.answer(a, b)) + [tt.EOS]); starts.append(len(prompt) - 1)',
      '    ids = torch.full((len(rows), max(map(len, rows))), tt.PAD)',
      '    mask = torch.zeros(ids.shape[0], ids.shape[1] - 1)',
      '    for i, r in enumerate(rows):',
      '        ids[i, : len(r)] = torch.tensor(r); mask[i, starts[i] : len(r) - 1] = 1',
      '    logits = model(ids)[:, :-1]',
      "    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction='none')",
      '    loss = (nll * mask).sum() / mask.sum()',
      '    opt.zero_grad(); loss.backward(); opt.step()',
      "tiny_model.save_hf_dir(model, cfg, out, dtype='bfloat16', shards=2)",
      "tt.write_jsonl(out / 'data' / 'train.jsonl', train); tt.write_jsonl(out / 'data' / 'eval.jsonl', evals)",
    ].join('\n'),
    [dir, String(seconds), String(seed)],
  );
}

export interface ConvertOptions {
  hfDir: string;
  saveDir: string;
  nodes: number;
  masterPort: number;
  parallelArgs: string[];
  modelArgs?: string[];
  env?: Record<string, string>;
}

/** One real torchrun per node (all on this host, master 127.0.0.1), like keel's 4-node conversion gang. */
export async function convertWithTorchrun(options: ConvertOptions): Promise<ProcessResult[]> {
  const modelArgs = options.modelArgs ?? (await tinyModelArgs());
  return Promise.all(
    Array.from({ length: options.nodes }, (_, rank) =>
      run(
        [
          torchrun,
          '--nproc-per-node',
          '1',
          '--nnodes',
          String(options.nodes),
          '--node-rank',
          String(rank),
          '--master-addr',
          '127.0.0.1',
          '--master-port',
          String(options.masterPort),
          converterScript,
          ...modelArgs,
          ...options.parallelArgs,
          '--hf-checkpoint',
          options.hfDir,
          '--save',
          options.saveDir,
        ],
        { env: options.env ?? {} },
      ),
    ),
  );
}

export interface TrainArgsOptions {
  modelDir: string;
  refLoad: string;
  saveDir: string;
  numRollout: number;
  saveInterval: number;
  evalInterval: number;
  actorNumNodes: number;
  actorNumGpusPerNode: number;
  seed?: number;
  lr?: number;
  extra?: string[];
}

/** train.py's arguments, grouped like the recipe's CKPT / PERF / GRPO / OPTIMIZER / ROLLOUT / EVAL groups. */
export async function trainArgs(o: TrainArgsOptions): Promise<string[]> {
  return [
    ...(await tinyModelArgs()),
    ...['--actor-num-nodes', String(o.actorNumNodes), '--actor-num-gpus-per-node', String(o.actorNumGpusPerNode)],
    '--colocate',
    ...['--hf-checkpoint', o.modelDir, '--ref-load', o.refLoad, '--load', o.saveDir, '--save', o.saveDir],
    ...['--save-interval', String(o.saveInterval)],
    ...['--tensor-model-parallel-size', '1', '--sequence-parallel', '--pipeline-model-parallel-size', '1'],
    ...['--context-parallel-size', '1', '--expert-model-parallel-size', '1', '--expert-tensor-parallel-size', '1'],
    ...['--recompute-granularity', 'full', '--recompute-method', 'uniform', '--recompute-num-layers', '1'],
    ...['--use-dynamic-batch-size', '--max-tokens-per-gpu', '512'],
    ...['--advantage-estimator', 'grpo', '--use-kl-loss', '--kl-loss-coef', '0.001', '--kl-loss-type', 'low_var_kl'],
    ...['--entropy-coef', '0.00', '--eps-clip', '0.2', '--eps-clip-high', '0.28'],
    ...['--optimizer', 'adam', '--lr', String(o.lr ?? 1e-4), '--lr-decay-style', 'constant', '--weight-decay', '0'],
    ...['--adam-beta1', '0.9', '--adam-beta2', '0.98', '--optimizer-cpu-offload', '--use-precision-aware-optimizer'],
    ...['--rollout-num-gpus-per-engine', '1', '--sglang-mem-fraction-static', '0.7'],
    ...['--attention-dropout', '0.0', '--hidden-dropout', '0.0', '--accumulate-allreduce-grads-in-fp32'],
    ...['--prompt-data', path.join(o.modelDir, 'data', 'train.jsonl'), '--input-key', 'prompt', '--label-key', 'label'],
    ...['--apply-chat-template', '--rollout-shuffle', '--rm-type', 'deepscaler', '--num-rollout', String(o.numRollout)],
    ...['--rollout-batch-size', '8', '--n-samples-per-prompt', '8', '--rollout-max-response-len', '8'],
    ...['--rollout-temperature', '1', '--global-batch-size', '64', '--balance-data'],
    ...['--over-sampling-batch-size', '16', '--dynamic-sampling-filter-path', dynamicSamplingFilter],
    ...['--eval-interval', String(o.evalInterval), '--eval-prompt-data', 'aime'],
    path.join(o.modelDir, 'data', 'eval.jsonl'),
    ...['--n-samples-per-eval-prompt', '2', '--eval-max-response-len', '8', '--eval-top-p', '1'],
    ...['--seed', String(o.seed ?? 1234)],
    ...(o.extra ?? []),
  ];
}

/** The Ray job entrypoint: `python3 train.py <args>`, quoted for the shell that Ray runs it in. */
export function trainEntrypoint(args: string[]): string {
  return quote([python, trainScript, ...args]);
}

export async function listDir(dir: string): Promise<string[]> {
  try {
    return (await fs.readdir(dir)).sort();
  } catch {
    return [];
  }
}
