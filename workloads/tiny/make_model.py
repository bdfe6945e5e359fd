"""Generate the tiny-local model: toy dataset, brief CPU pretraining, FP8 release layout like DeepSeek-R1's.

    python make_model.py --out DIR [--seed N] [--steps N] [--target-pass-rate R] [--lr LR] [--shards N]

Writes into DIR:
  data/train.jsonl, data/eval.jsonl        {"prompt", "label"} lines of the toy addition task (disjoint splits)
  config.json                              DeepSeek-V3-style config with "quantization_config" (fp8, e4m3, 128x128)
  model-0000K-of-0000N.safetensors         decoder-layer linear weights in F8_E4M3 + F32 "<name>_scale_inv"
                                           (128x128 blocks, partial edge blocks); embeddings, norms, router gates
                                           and lm_head stay BF16 -- like the R1 release. Every shard boundary falls
                                           right after an FP8 weight, so its scale sits in the next shard.
  tokenizer.json, tokenizer_config.json, generation_config.json
  model.safetensors.index.json             {"metadata": {"total_size"}, "weight_map"}, written LAST
  .tiny-model-stamp.json                   generator version + arguments, then (after the index) the pass rates

Pretraining stops at the first probe (every CHECK_EVERY steps) whose pass rate, sampled at temperature 1 on prompts of
the train split, reaches --target-pass-rate, or after --steps steps: brief on purpose, so the model solves the task
sometimes but not always and RL has room to improve it. When a seed's model learns addition varies by hundreds of
steps, so a fixed step count leaves one seed's model hardly able to add and another's near its ceiling. Training runs on
one CPU thread, with every random choice (the probe's sampling too) drawn from --seed and torch's deterministic
algorithms: the same arguments give the same model, and the same stopping step, on every run, whatever the load of the
machine. The learning rate follows a schedule of a fixed horizon (LR_HORIZON), not one stretched over --steps: a run
that stops earlier is the same run stopped earlier. Cached: when DIR already holds a complete model made with the same
version and arguments, it exits at once.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

import toy_task as task  # noqa: E402
from tiny_model import (  # noqa: E402
    INDEX_FILE,
    SCALE_SUFFIX,
    TinyConfig,
    TinyMoE,
    load_hf_dir,
    quantize_fp8_blockwise,
    write_config,
    write_sharded,
)

GENERATOR_VERSION = 4
STAMP_FILE = '.tiny-model-stamp.json'
N_TRAIN, N_EVAL, N_PROBE = 2000, 200, 128
BATCH = 64
CHECK_EVERY = 50
DEFAULT_STEPS = 1500
DEFAULT_TARGET_PASS_RATE = 0.5
DEFAULT_LR = 1e-3
# The learning-rate schedule: linear warmup, then cosine decay over a fixed horizon, the same whatever --steps is, so
# that the model of N steps is the model of M > N steps stopped at step N.
WARMUP_STEPS = 50
LR_HORIZON = 1500
QUANTIZATION_CONFIG = {
    'activation_scheme': 'dynamic',
    'fmt': 'e4m3',
    'quant_method': 'fp8',
    'weight_block_size': [128, 128],
}


def log(message: str) -> None:
    print(f'[make_model] {message}', flush=True)


def is_quantized(name: str, tensor: torch.Tensor) -> bool:
    """Which tensors the R1 release stores in FP8: 2-D linear weights of decoder layers except the router gate."""
    return name.startswith('model.layers.') and tensor.dim() == 2 and not name.endswith('mlp.gate.weight')


def pass_rate(model: TinyMoE, rows: list[dict[str, str]], temperature: float, seed: int) -> float:
    generator = torch.Generator().manual_seed(seed)
    prompts = [task.prompt_ids(r['prompt']) for r in rows]
    outs = model.generate(prompts, task.MAX_ANSWER_TOKENS + 1, temperature, generator)
    return sum(task.reward(task.decode(o), r['label']) for o, r in zip(outs, rows)) / len(rows)


def deterministic(seed: int) -> None:
    """One thread (a reduction split over threads sums in another order), deterministic kernels, seeded RNGs."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    random.seed(seed)
    torch.manual_seed(seed)


def make_batch(pairs: list[tuple[int, int]], rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded [BOS] prompt answer [EOS] sequences; targets only on the answer and EOS."""
    seqs: list[list[int]] = []
    starts: list[int] = []
    for _ in range(BATCH):
        a, b = rng.choice(pairs)
        prompt = task.prompt_ids(task.make_prompt(a, b))
        seqs.append(prompt + task.encode(task.answer(a, b)) + [task.EOS])
        starts.append(len(prompt))
    width = max(len(s) for s in seqs)
    inputs = torch.full((BATCH, width), task.PAD, dtype=torch.long)
    targets = torch.full((BATCH, width), -100, dtype=torch.long)
    for i, (seq, start) in enumerate(zip(seqs, starts)):
        inputs[i, : len(seq)] = torch.tensor(seq)
        targets[i, start - 1 : len(seq) - 1] = torch.tensor(seq[start:])
    return inputs, targets


def pretrain(
    model: TinyMoE, pairs: list[tuple[int, int]], probe: list[dict[str, str]], args: argparse.Namespace
) -> int:
    """AdamW with warmup + cosine decay over LR_HORIZON steps, stopped at the first probe that reaches
    args.target_pass_rate or after args.steps steps; returns the number of steps taken."""
    rng = random.Random(args.seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, betas=(0.9, 0.98))
    model.train()
    started = time.monotonic()
    for step in range(1, args.steps + 1):
        cosine = 1 + math.cos(math.pi * min(step - 1, LR_HORIZON) / LR_HORIZON)
        lr = args.lr * min(1.0, step / WARMUP_STEPS) * 0.5 * cosine
        for group in opt.param_groups:
            group['lr'] = lr
        inputs, targets = make_batch(pairs, rng)
        loss = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        for gate in model.gates():
            gate.update_balance_bias(1e-3)
        if step % CHECK_EVERY == 0 or step == args.steps:
            rate = pass_rate(model, probe, 1.0, args.seed)
            model.train()
            log(f'step {step}: loss {loss.item():.3f}, probe pass rate {rate:.3f} ({time.monotonic() - started:.0f}s)')
            if rate >= args.target_pass_rate:
                return step
    return args.steps


def write_tokenizer_files(out: Path) -> None:
    vocab = {tok: i for i, tok in enumerate(task.VOCAB)}
    specials = [
        {'id': i, 'content': tok, 'single_word': False, 'lstrip': False, 'rstrip': False, 'normalized': False}
        | {'special': True}
        for i, tok in enumerate(task.SPECIAL_TOKENS)
    ]
    tokenizer = {
        'version': '1.0',
        'truncation': None,
        'padding': None,
        'added_tokens': specials,
        'normalizer': None,
        'pre_tokenizer': None,
        'post_processor': None,
        'decoder': None,
        # A BPE model without merges splits text into single characters: the toy task's character tokenizer.
        'model': {'type': 'BPE', 'dropout': None, 'unk_token': None, 'fuse_unk': False, 'vocab': vocab, 'merges': []},
    }
    tokenizer_config = {
        'tokenizer_class': 'PreTrainedTokenizerFast',
        'bos_token': task.VOCAB[task.BOS],
        'eos_token': task.VOCAB[task.EOS],
        'pad_token': task.VOCAB[task.PAD],
        'add_bos_token': True,
        'add_eos_token': False,
        'model_max_length': 64,
    }
    generation_config = {
        'bos_token_id': task.BOS,
        'eos_token_id': task.EOS,
        'pad_token_id': task.PAD,
        'do_sample': True,
        'temperature': 1.0,
        'top_p': 1.0,
        'max_new_tokens': task.MAX_ANSWER_TOKENS + 1,
    }
    for name, data in (
        ('tokenizer.json', tokenizer),
        ('tokenizer_config.json', tokenizer_config),
        ('generation_config.json', generation_config),
    ):
        (out / name).write_text(json.dumps(data, indent=2) + '\n', encoding='utf-8')


def fp8_release_tensors(model: TinyMoE) -> list[tuple[str, torch.Tensor]]:
    """State dict in release order: FP8 weight immediately followed by its scale; the rest in BF16."""
    tensors: list[tuple[str, torch.Tensor]] = []
    for name, value in model.state_dict().items():
        if is_quantized(name, value):
            q, scale_inv = quantize_fp8_blockwise(value)
            tensors += [(name, q), (name + SCALE_SUFFIX, scale_inv)]
        else:
            tensors.append((name, value.to(torch.bfloat16)))
    return tensors


def write_release(model: TinyMoE, cfg: TinyConfig, out: Path, shards: int) -> None:
    write_config(out, cfg, {'torch_dtype': 'bfloat16', 'quantization_config': QUANTIZATION_CONFIG})
    write_tokenizer_files(out)
    tensors = fp8_release_tensors(model)
    scaled = {name[: -len(SCALE_SUFFIX)] for name, _ in tensors if name.endswith(SCALE_SUFFIX)}
    write_sharded(out, tensors, shards, may_cut_after=lambda name: name in scaled)


def stamp_for(args: argparse.Namespace) -> dict[str, Any]:
    return {
        'generator_version': GENERATOR_VERSION,
        'seed': args.seed,
        'steps': args.steps,
        'target_pass_rate': args.target_pass_rate,
        'lr': args.lr,
        'shards': args.shards,
    }


def cached_report(out: Path, stamp: dict[str, Any]) -> dict[str, Any] | None:
    """The stored report when out holds a complete model made with the same stamp, else None."""
    try:
        stored = json.loads((out / STAMP_FILE).read_text())
        index = json.loads((out / INDEX_FILE).read_text())
    except (OSError, ValueError):
        return None
    if stored.get('stamp') != stamp:
        return None
    files = set(index['weight_map'].values()) | {'config.json', 'data/train.jsonl', 'data/eval.jsonl'}
    if not all((out / f).is_file() for f in files):
        return None
    return stored.get('report')


def clear_model_files(out: Path) -> None:
    (out / INDEX_FILE).unlink(missing_ok=True)
    for path in out.glob('model-*-of-*.safetensors*'):
        path.unlink()
    shutil.rmtree(out / 'data', ignore_errors=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', required=True, type=Path)
    parser.add_argument('--seed', type=int, default=1234)
    parser.add_argument('--steps', type=int, default=DEFAULT_STEPS, help='pretraining steps at most')
    parser.add_argument(
        '--target-pass-rate',
        type=float,
        default=DEFAULT_TARGET_PASS_RATE,
        help='stop pretraining at the first probe with this pass rate',
    )
    parser.add_argument('--lr', type=float, default=DEFAULT_LR)
    parser.add_argument('--shards', type=int, default=4)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out: Path = args.out
    stamp = stamp_for(args)
    report = cached_report(out, stamp)
    if report is not None:
        log(f'cached model in {out}: {json.dumps(report)}')
        print(json.dumps(report), flush=True)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    clear_model_files(out)
    deterministic(args.seed)

    train, evaluation = task.make_splits(N_TRAIN, N_EVAL, args.seed)
    task.write_jsonl(out / 'data' / 'train.jsonl', train)
    task.write_jsonl(out / 'data' / 'eval.jsonl', evaluation)
    pairs = task.pretraining_pairs({r['prompt'] for r in evaluation})

    cfg = TinyConfig(vocab_size=task.VOCAB_SIZE)
    model = TinyMoE(cfg)
    started = time.monotonic()
    steps_taken = pretrain(model, pairs, train[:N_PROBE], args)
    pretrain_seconds = time.monotonic() - started

    (out / STAMP_FILE).write_text(json.dumps({'stamp': stamp}) + '\n', encoding='utf-8')
    write_release(model, cfg, out, args.shards)
    _, reloaded = load_hf_dir(out)
    report = {
        'steps': steps_taken,
        'pretrain_seconds': round(pretrain_seconds, 1),
        'eval_pass_rate_fp32': pass_rate(model, evaluation, 1.0, args.seed),
        'eval_pass_rate_fp8': pass_rate(reloaded, evaluation, 1.0, args.seed),
        'eval_greedy_pass_rate_fp32': pass_rate(model, evaluation, 0.0, args.seed),
        'eval_greedy_pass_rate_fp8': pass_rate(reloaded, evaluation, 0.0, args.seed),
    }
    # The model is complete once its index exists; the generator's cache also needs the stamp with the report.
    (out / STAMP_FILE).write_text(json.dumps({'stamp': stamp, 'report': report}) + '\n', encoding='utf-8')
    log(f'wrote {out}: {json.dumps(report)}')
    print(json.dumps(report), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
