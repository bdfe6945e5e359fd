"""Shared pieces of the tiny stand-ins for slime's GPU programs (not slime, not Megatron).

``tools/convert_hf_to_torch_dist.py`` and ``train.py`` in this folder imitate the *contract* of slime's programs
(argument names, log lines, checkpoint layout) so that keel can be tested end to end on CPUs. This module holds what
both need:

- an argparse parser that behaves like Megatron's (no prefix abbreviations, unknown flags are an error, exit 2);
- the Megatron model flags (``MODEL_ARGS`` of ``scripts/models/tiny-v3.sh``) and their check against a
  DeepSeek-V3-style config (a mismatch is a clear error, as a shape mismatch is in Megatron);
- the parallel-layout flags and Megatron's divisibility checks, and the pipeline split of the layers;
- the torch_dist checkpoint layout: ``iter_{n:07d}/`` or ``release/`` written with ``torch.distributed.checkpoint``
  (``.metadata`` + ``__{rank}_0.distcp``), ``metadata.json``, ``common.pt``, the tracker
  ``latest_checkpointed_iteration.txt`` and the dataset state ``rollout/global_dataset_state_dict_{n}.pt``;
- Megatron-like log lines.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import torch

TRACKER_FILE = 'latest_checkpointed_iteration.txt'
METADATA_FILE = 'metadata.json'
COMMON_FILE = 'common.pt'
RELEASE = 'release'
TORCH_DIST_METADATA = {
    'sharded_backend': 'torch_dist',
    'sharded_backend_version': 1,
    'common_backend': 'torch',
    'common_backend_version': 1,
}


class ConfigMismatch(Exception):
    """A command-line value that contradicts the checkpoint or the parallel layout (the programs exit 1)."""


def exit_on_config_mismatch(err: ConfigMismatch) -> None:
    print(f'error: {err}', file=sys.stderr, flush=True)
    sys.exit(1)


def log(message: str) -> None:
    """One log line on stdout, flushed at once (Ray and torchrun relay stdout line by line)."""
    print(message, flush=True)


def metrics_repr(metrics: dict[str, Any]) -> str:
    """A metrics dict as slime prints it: the Python repr with plain floats."""
    return repr({k: (float(v) if isinstance(v, (int, float, torch.Tensor)) else v) for k, v in metrics.items()})


# --- argument parsing -------------------------------------------------------------------------------------------


def new_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """argparse with exact flag names (a misspelt or shortened flag is an error, exit status 2)."""
    return argparse.ArgumentParser(prog=prog, description=description, allow_abbrev=False)


def _flag(parser: argparse.ArgumentParser | Any, *names: str) -> None:
    parser.add_argument(*names, action='store_true')


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """Megatron's model flags as used by slime's scripts/models/deepseek-v3.sh (MLA + MoE)."""
    g = parser.add_argument_group('model (MODEL_ARGS)')
    g.add_argument('--num-layers', type=int, required=True)
    g.add_argument('--hidden-size', type=int, required=True)
    g.add_argument('--num-attention-heads', type=int, required=True)
    g.add_argument('--ffn-hidden-size', type=int)
    g.add_argument('--kv-channels', type=int)
    g.add_argument('--vocab-size', type=int)
    g.add_argument('--make-vocab-size-divisible-by', type=int, default=128)
    g.add_argument('--max-position-embeddings', type=int)
    g.add_argument('--seq-length', type=int)
    g.add_argument('--normalization', choices=['LayerNorm', 'RMSNorm'], default='LayerNorm')
    g.add_argument('--norm-epsilon', type=float)
    g.add_argument('--position-embedding-type', choices=['learned_absolute', 'rope', 'mrope', 'yarn', 'none'])
    g.add_argument('--rotary-base', type=float)
    g.add_argument('--rotary-percent', type=float, default=1.0)
    g.add_argument('--rotary-scaling-factor', type=float, default=1.0)
    g.add_argument('--mscale', type=float, default=1.0)
    g.add_argument('--mscale-all-dim', type=float, default=0.0)
    g.add_argument('--init-method-std', type=float, default=0.02)
    for name in (
        '--swiglu',
        '--disable-bias-linear',
        '--untie-embeddings-and-output-weights',
        '--no-position-embedding',
        '--qk-layernorm',
        '--multi-latent-attention',
        '--moe-grouped-gemm',
        '--moe-permute-fusion',
        '--moe-router-pre-softmax',
        '--moe-router-enable-expert-bias',
        '--group-query-attention',
    ):
        _flag(g, name)
    g.add_argument('--num-query-groups', type=int)
    g.add_argument('--q-lora-rank', type=int)
    g.add_argument('--kv-lora-rank', type=int)
    g.add_argument('--qk-head-dim', type=int)
    g.add_argument('--qk-pos-emb-head-dim', type=int)
    g.add_argument('--v-head-dim', type=int)
    g.add_argument('--num-experts', type=int)
    g.add_argument('--moe-ffn-hidden-size', type=int)
    g.add_argument('--moe-shared-expert-intermediate-size', type=int)
    g.add_argument('--moe-router-topk', type=int, default=2)
    g.add_argument('--moe-layer-freq', type=parse_moe_layer_freq, default=1)
    g.add_argument('--moe-router-score-function', choices=['softmax', 'sigmoid'], default='softmax')
    g.add_argument('--moe-router-topk-scaling-factor', type=float)
    g.add_argument('--moe-router-num-groups', type=int)
    g.add_argument('--moe-router-group-topk', type=int)
    g.add_argument('--moe-router-bias-update-rate', type=float, default=1e-3)
    g.add_argument('--moe-router-load-balancing-type', default='aux_loss')
    g.add_argument('--moe-aux-loss-coeff', type=float, default=0.0)
    g.add_argument('--moe-router-dtype', choices=['fp32', 'fp64'])
    g.add_argument('--mtp-num-layers', type=int)
    g.add_argument('--bf16', action='store_true')


def parse_moe_layer_freq(text: str) -> int | list[int]:
    """Megatron's --moe-layer-freq: an int (every k-th layer is MoE) or a list expression like ``[0]*1+[1]*3``."""
    text = text.strip()
    if not text.startswith('['):
        try:
            return int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'invalid --moe-layer-freq {text!r}') from None
    try:
        value = _eval_list_expr(ast.parse(text, mode='eval').body)
    except (SyntaxError, ValueError) as err:
        raise argparse.ArgumentTypeError(f'invalid --moe-layer-freq {text!r}: {err}') from None
    if not all(v in (0, 1) for v in value):
        raise argparse.ArgumentTypeError(f'--moe-layer-freq must list 0/1 per layer, got {value}')
    return value


def _eval_list_expr(node: ast.AST) -> list[int]:
    """Evaluate list literals of ints combined with + and * (nothing else)."""
    if isinstance(node, ast.List):
        out = []
        for elt in node.elts:
            if not isinstance(elt, ast.Constant) or not isinstance(elt.value, int):
                raise ValueError('list elements must be integers')
            out.append(elt.value)
        return out
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _eval_list_expr(node.left) + _eval_list_expr(node.right)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        if isinstance(node.right, ast.Constant) and isinstance(node.right.value, int):
            return _eval_list_expr(node.left) * node.right.value
        if isinstance(node.left, ast.Constant) and isinstance(node.left.value, int):
            return _eval_list_expr(node.right) * node.left.value
    raise ValueError('only [..], + and * by an integer are allowed')


def add_parallel_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group('parallel layout')
    g.add_argument('--tensor-model-parallel-size', type=int, default=1)
    g.add_argument('--pipeline-model-parallel-size', type=int, default=1)
    g.add_argument('--context-parallel-size', type=int, default=1)
    g.add_argument('--expert-model-parallel-size', type=int, default=1)
    g.add_argument('--expert-tensor-parallel-size', type=int)
    g.add_argument('--decoder-first-pipeline-num-layers', type=int)
    g.add_argument('--decoder-last-pipeline-num-layers', type=int)
    _flag(g, '--sequence-parallel')
    g.add_argument('--distributed-timeout-minutes', type=int, default=10)
    g.add_argument('--distributed-backend', choices=['nccl', 'gloo'], default='nccl')


# --- model flags against a checkpoint's config -------------------------------------------------------------------


def dense_moe_pattern(cfg: Any) -> list[int]:
    """Per layer: 0 dense MLP, 1 MoE -- DeepSeek-V3's rule (first_k_dense_replace, moe_layer_freq)."""
    return [
        0 if i < cfg.first_k_dense_replace or i % cfg.moe_layer_freq != 0 else 1 for i in range(cfg.num_hidden_layers)
    ]


def model_arg_mismatches(args: argparse.Namespace, cfg: Any) -> list[str]:
    """Megatron flags that contradict a DeepSeek-V3-style config (only the flags given are checked)."""
    expected: dict[str, Any] = {
        'num_layers': cfg.num_hidden_layers,
        'hidden_size': cfg.hidden_size,
        'num_attention_heads': cfg.num_attention_heads,
        'ffn_hidden_size': cfg.intermediate_size,
        'vocab_size': cfg.vocab_size,
        'num_experts': cfg.n_routed_experts,
        'moe_ffn_hidden_size': cfg.moe_intermediate_size,
        'moe_shared_expert_intermediate_size': cfg.moe_intermediate_size * cfg.n_shared_experts,
        'q_lora_rank': cfg.q_lora_rank,
        'kv_lora_rank': cfg.kv_lora_rank,
        'qk_head_dim': cfg.qk_nope_head_dim,
        'qk_pos_emb_head_dim': cfg.qk_rope_head_dim,
        'v_head_dim': cfg.v_head_dim,
        'moe_router_topk_scaling_factor': cfg.routed_scaling_factor,
        'moe_router_num_groups': cfg.n_group,
        'moe_router_group_topk': cfg.topk_group,
        'norm_epsilon': cfg.rms_norm_eps,
        'rotary_base': cfg.rope_theta,
        'mtp_num_layers': cfg.num_nextn_predict_layers,
        'max_position_embeddings': cfg.max_position_embeddings,
    }
    problems = []
    for name, want in expected.items():
        got = getattr(args, name, None)
        if got is not None and got != want:
            problems.append(f'--{name.replace("_", "-")} {got} does not match the checkpoint ({want})')
    if args.num_experts is not None and args.moe_router_topk != cfg.num_experts_per_tok:
        problems.append(f'--moe-router-topk {args.moe_router_topk} does not match the checkpoint ({cfg.num_experts_per_tok})')
    if args.num_experts is not None:
        freq = args.moe_layer_freq
        pattern = freq if isinstance(freq, list) else [1 if i % freq == 0 else 0 for i in range(args.num_layers)]
        if pattern != dense_moe_pattern(cfg):
            problems.append(f'--moe-layer-freq {pattern} does not match the checkpoint ({dense_moe_pattern(cfg)})')
        if args.moe_router_score_function != cfg.scoring_func:
            problems.append(
                f'--moe-router-score-function {args.moe_router_score_function} does not match the checkpoint'
                f' ({cfg.scoring_func})'
            )
    if args.untie_embeddings_and_output_weights == bool(cfg.tie_word_embeddings):
        problems.append(
            '--untie-embeddings-and-output-weights '
            + ('is set but the checkpoint ties them' if cfg.tie_word_embeddings else 'is missing: the checkpoint unties them')
        )
    return problems


def check_model_args(args: argparse.Namespace, cfg: Any, source: str) -> None:
    problems = model_arg_mismatches(args, cfg)
    if problems:
        raise ConfigMismatch(f'model arguments do not match {source}:\n  ' + '\n  '.join(problems))


# --- parallel layout ---------------------------------------------------------------------------------------------


def pipeline_split(num_layers: int, pp: int, first: int | None, last: int | None) -> list[int]:
    """Layers per pipeline stage, Megatron's rule: the given first/last stages, the rest split evenly."""
    if pp == 1:
        if first is not None or last is not None:
            raise ValueError('--decoder-first/last-pipeline-num-layers need --pipeline-model-parallel-size > 1')
        return [num_layers]
    middle_stages = pp - (first is not None) - (last is not None)
    middle_layers = num_layers - (first or 0) - (last or 0)
    if middle_layers < 0 or (middle_stages == 0 and middle_layers != 0):
        raise ValueError(f'{num_layers} layers cannot fill first={first} and last={last} pipeline stages')
    if middle_stages > 0 and (middle_layers % middle_stages != 0 or middle_layers == 0):
        raise ValueError(
            f'the {middle_layers} layers left for the {middle_stages} middle pipeline stages do not divide evenly'
            f' (num-layers {num_layers}, first {first}, last {last}, pipeline size {pp})'
        )
    each = middle_layers // middle_stages if middle_stages else 0
    return ([first] if first is not None else []) + [each] * middle_stages + ([last] if last is not None else [])


def check_parallel_layout(args: argparse.Namespace, world_size: int) -> list[int]:
    """Megatron's divisibility checks; returns the layers per pipeline stage."""
    tp, pp, cp = args.tensor_model_parallel_size, args.pipeline_model_parallel_size, args.context_parallel_size
    ep = args.expert_model_parallel_size
    etp = args.expert_tensor_parallel_size or tp
    if world_size % (tp * pp * cp) != 0:
        raise ConfigMismatch(
            f'world size ({world_size}) is not divisible by tensor model parallel size ({tp}) times pipeline model'
            f' parallel size ({pp}) times context parallel size ({cp})'
        )
    if world_size % (etp * ep * pp) != 0:
        raise ConfigMismatch(
            f'world size ({world_size}) is not divisible by expert tensor parallel size ({etp}) times expert model'
            f' parallel size ({ep}) times pipeline model parallel size ({pp})'
        )
    if args.num_experts is not None and args.num_experts % ep != 0:
        raise ConfigMismatch(f'number of experts ({args.num_experts}) must be divisible by expert parallel size ({ep})')
    try:
        return pipeline_split(
            args.num_layers, pp, args.decoder_first_pipeline_num_layers, args.decoder_last_pipeline_num_layers
        )
    except ValueError as err:
        raise ConfigMismatch(str(err)) from None


# --- distributed helpers -----------------------------------------------------------------------------------------


def local_address_towards(host: str) -> str:
    """The local IP this host uses to reach `host` (a UDP 'connect' sends nothing; it only picks the route)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, 9))
        return s.getsockname()[0]


def gloo_options(bind_address: str) -> Any:
    """Gloo options that bind the rank's sockets to one address (default: whatever the hostname resolves to)."""
    import torch.distributed as dist

    opts = dist.ProcessGroupGloo._Options()
    opts._devices = [dist.ProcessGroupGloo.create_device(hostname=bind_address)]
    return opts


# --- checkpoint layout -------------------------------------------------------------------------------------------


def iteration_dir_name(iteration: int) -> str:
    return f'iter_{iteration:07d}'


def read_tracker(directory: str | Path) -> int | str | None:
    """The tracker's content: an iteration, 'release', or None when there is no tracker file."""
    path = Path(directory) / TRACKER_FILE
    if not path.exists():
        return None
    text = path.read_text().strip()
    if text == RELEASE:
        return RELEASE
    try:
        return int(text)
    except ValueError:
        raise ValueError(f'ERROR: Invalid metadata file {path}. Exiting') from None


def write_tracker(directory: str | Path, value: int | str) -> None:
    path = Path(directory) / TRACKER_FILE
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(f'{value}\n' if isinstance(value, int) else f'{value}')
    os.replace(tmp, path)


def checkpoint_dir(directory: str | Path, tracker: int | str) -> Path:
    return Path(directory) / (RELEASE if tracker == RELEASE else iteration_dir_name(int(tracker)))


def write_checkpoint_side_files(ckpt: Path, iteration: int, hf_config: dict[str, Any], args: dict[str, Any]) -> None:
    """Rank 0's files next to the DCP shards: common.pt (args, config, iteration) and metadata.json."""
    torch.save({'iteration': iteration, 'hf_config': hf_config, 'args': args, 'checkpoint_version': 3.0}, ckpt / COMMON_FILE)
    (ckpt / METADATA_FILE).write_text(json.dumps(TORCH_DIST_METADATA))


def read_common(ckpt: Path) -> dict[str, Any]:
    path = ckpt / COMMON_FILE
    if not path.exists():
        raise FileNotFoundError(f'{path} is missing: not a checkpoint written by these stand-ins')
    return torch.load(path, weights_only=False)


def check_torch_dist(ckpt: Path) -> None:
    meta = ckpt / METADATA_FILE
    if not meta.exists() or json.loads(meta.read_text()).get('sharded_backend') != 'torch_dist':
        raise FileNotFoundError(f'{ckpt} is not a torch_dist checkpoint ({METADATA_FILE} missing or wrong backend)')
    if not (ckpt / '.metadata').exists():
        raise FileNotFoundError(f'{ckpt} has no .metadata (incomplete torch.distributed.checkpoint save)')


def dataset_state_path(directory: str | Path, rollout_id: int) -> Path:
    return Path(directory) / 'rollout' / f'global_dataset_state_dict_{rollout_id}.pt'


def json_safe_args(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool, list, type(None)))}
