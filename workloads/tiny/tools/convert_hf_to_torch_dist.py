"""HF -> torch_dist conversion for the tiny DeepSeek-V3-shaped model: a CPU stand-in for slime's
``tools/convert_hf_to_torch_dist.py`` (this is not slime's program; it speaks the same contract).

Run by the real torchrun, one or more ranks per node, gloo backend:

    torchrun --nproc-per-node 1 --nnodes N --node-rank R --master-addr A --master-port P \\
        tools/convert_hf_to_torch_dist.py "${MODEL_ARGS[@]}" \\
        --tensor-model-parallel-size 1 --pipeline-model-parallel-size 2 \\
        --expert-tensor-parallel-size 1 --expert-model-parallel-size 2 \\
        --hf-checkpoint BF16_HF_DIR --save OUT_DIR

What it does (slime's "done when" list):
1. every rank loads the BF16 HF directory and checks the model flags against its config.json (mismatch: exit 1)
   and the parallel layout against the world size (Megatron's divisibility rules: exit 1);
2. every rank keeps the tensors its (pipeline stage, expert-parallel rank) owns -- the layers of its stage, the
   experts of its expert rank; replicated tensors are de-duplicated by torch.distributed.checkpoint -- and all ranks
   save them together with DCP into ``$SAVE/iter_0000001/`` (``.metadata`` + ``__{rank}_0.distcp``);
3. after a barrier rank 0 writes ``common.pt`` and ``metadata.json`` (``{"sharded_backend": "torch_dist"}``),
   writes ``release`` into ``$SAVE/latest_checkpointed_iteration.txt`` and ends as slime's tool does,
   ``shutil.move(iter_0000001, release)``: into an existing ``release/`` it nests, and the stale one stays. Like
   Megatron it saves over an existing ``iter_0000001/`` and leaves files it does not rewrite: clearing what a failed
   attempt left is the caller's work (keel's convert step does it).
``TINY_CONVERT_CRASH_ONCE=FILE`` (fault injection): while FILE exists, rank 0 removes it and dies after the save,
leaving ``iter_0000001/`` with an extra shard of another layout.

Tensor names are the Hugging Face names of the model (``model.layers.3.mlp.experts.5.up_proj.weight``), stored in
bfloat16. Unknown flags are an argparse error (exit 2). ``TINY_CONVERT_SLEEP_S`` makes each rank wait that many
seconds before saving (fault tests).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import slime_contract as sc  # noqa: E402
import tiny_model  # noqa: E402

LAYER_RE = re.compile(r'(?:^|\.)layers\.(\d+)\.')
EXPERT_RE = re.compile(r'\.experts\.(\d+)\.')


def parse_args(argv: list[str] | None = None):
    parser = sc.new_parser('convert_hf_to_torch_dist.py', 'HF -> torch_dist conversion (tiny CPU stand-in)')
    sc.add_model_args(parser)
    sc.add_parallel_args(parser)
    g = parser.add_argument_group('checkpoint')
    g.add_argument('--hf-checkpoint', required=True, help='BF16 Hugging Face directory')
    g.add_argument('--save', required=True, help='output directory (release/ and the tracker go here)')
    g.add_argument('--use-cpu-initialization', action='store_true')
    g.add_argument('--no-save-optim', action='store_true')
    g.add_argument('--no-save-rng', action='store_true')
    g.add_argument('--ckpt-format', choices=['torch_dist'], default='torch_dist')
    return parser.parse_args(argv)


def stage_of_layer(layer: int, split: list[int]) -> int:
    end = 0
    for stage, count in enumerate(split):
        end += count
        if layer < end:
            return stage
    raise ValueError(f'layer {layer} is beyond the pipeline split {split}')


def owned_state_dict(model: torch.nn.Module, split: list[int], args, world_size: int, rank: int):
    """The tensors this rank holds in a Megatron layout: pipeline stage is the outermost rank dimension."""
    pp = args.pipeline_model_parallel_size
    ep = args.expert_model_parallel_size
    etp = args.expert_tensor_parallel_size or args.tensor_model_parallel_size
    ranks_per_stage = world_size // pp
    stage = rank // ranks_per_stage
    ep_rank = ((rank % ranks_per_stage) // etp) % ep
    n_experts = args.num_experts or 1
    experts_per_rank = max(1, n_experts // ep)
    owned: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        layer = LAYER_RE.search(name)
        if layer is not None:
            tensor_stage = stage_of_layer(int(layer.group(1)), split)
        elif 'embed_tokens' in name:
            tensor_stage = 0
        else:  # final norm, output layer
            tensor_stage = pp - 1
        if tensor_stage != stage:
            continue
        expert = EXPERT_RE.search(name)
        if expert is not None and int(expert.group(1)) // experts_per_rank != ep_rank:
            continue
        owned[name] = tensor.detach().to(torch.bfloat16).contiguous()
    return owned, stage, ep_rank


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rank = int(os.environ.get('RANK', '0'))
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    master = os.environ.get('MASTER_ADDR', '127.0.0.1')
    try:  # every rank checks the same things before joining the group, so a bad flag fails all ranks at once
        split = sc.check_parallel_layout(args, world_size)
        cfg, model = tiny_model.load_hf_dir(args.hf_checkpoint)
        sc.check_model_args(args, cfg, f'{args.hf_checkpoint}/config.json')
    except sc.ConfigMismatch as err:
        sc.exit_on_config_mismatch(err)
    if rank == 0:
        sc.log('> initializing torch distributed ...')
    dist.init_process_group(
        'gloo',
        timeout=timedelta(minutes=args.distributed_timeout_minutes),
        pg_options=sc.gloo_options(sc.local_address_towards(master)),
    )
    tp, pp, cp = args.tensor_model_parallel_size, args.pipeline_model_parallel_size, args.context_parallel_size
    if rank == 0:
        sc.log(
            f'using world size: {world_size}, data-parallel size: {world_size // (tp * pp * cp)}, context-parallel size:'
            f' {cp}, tensor-model-parallel size: {tp}, pipeline-model-parallel size: {pp}'
        )
        sc.log(f'> pipeline split (layers per stage): {split}')
    owned, stage, ep_rank = owned_state_dict(model, split, args, world_size, rank)
    n_params = sum(t.numel() for t in owned.values())
    sc.log(f' > number of parameters on (tensor, pipeline, expert) model parallel rank (0, {stage}, {ep_rank}): {n_params}')

    delay = float(os.environ.get('TINY_CONVERT_SLEEP_S', '0') or 0)
    if delay > 0:
        sc.log(f'[rank {rank}] TINY_CONVERT_SLEEP_S: waiting {delay:g}s before saving')
        time.sleep(delay)

    save = Path(args.save)
    work = save / sc.iteration_dir_name(1)
    if rank == 0:
        save.mkdir(parents=True, exist_ok=True)
        # As Megatron: an existing iter_0000001/ is written over, and files it does not rewrite stay.
        if work.is_dir() and any(work.iterdir()):
            sc.log('Overwriting old incomplete / corrupted checkpoint...')
        work.mkdir(exist_ok=True)
        sc.log(f'saving checkpoint at iteration {1:7d} to {save} in torch_dist format')
    dist.barrier()
    dcp.save(owned, checkpoint_id=str(work))
    dist.barrier()
    crash_flag = os.environ.get('TINY_CONVERT_CRASH_ONCE')
    if rank == 0 and crash_flag and os.path.exists(crash_flag):
        # fault injection: die with iter_0000001/ written but not moved, holding a shard of another layout
        os.remove(crash_flag)
        (work / '__99_0.distcp').write_bytes(b'shard of an earlier layout')
        raise RuntimeError(f'injected crash: {crash_flag} existed')
    if rank == 0:
        sc.write_checkpoint_side_files(work, 1, cfg.to_json(), sc.json_safe_args(args))
        sc.write_tracker(save, sc.RELEASE)
        # As slime's tool ends: shutil.move nests iter_0000001 inside a release/ that already exists.
        release = save / sc.RELEASE
        shutil.move(str(work), str(release))
        sc.log(f'successfully saved checkpoint from iteration {1:7d} to {save}')
        sc.log(f'> converted {args.hf_checkpoint} to {release} ({world_size} ranks)')
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == '__main__':
    sys.exit(main())
