"""The training rank of the tiny GRPO trainer (``train.py``): a CPU stand-in for slime's Megatron train actor,
not slime's code.

One Ray actor per GPU bundle of the placement group; the actors form a gloo process group. Each rank holds the
whole tiny policy (data parallel), samples its share of every rollout and of every eval, computes the GRPO loss on
its share of the kept samples, and the gradients are all-reduced before every Adam step, so every rank takes part
in every rollout and every step (a lost node fails the job; a stopped node hangs it until the gloo timeout).
Checkpoints are written by all ranks together with torch.distributed.checkpoint; rank 0 writes the side files and
the tracker after a barrier, as Megatron does.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import ray
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.nn.functional as F

import slime_contract as sc
import tiny_model
from toy_task import BOS, EOS, PAD

OPTIMIZER_PREFIX = 'optimizer.'
NEVER_LOGIT = -1e9  # PAD and BOS are never sampled


def split_evenly(items: list[Any], parts: int) -> list[list[Any]]:
    """Contiguous chunks whose sizes differ by at most one (some may be empty)."""
    base, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + base + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-row mean over the masked positions: [B, T] -> [B]."""
    return (x * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def learning_rate(args: SimpleNamespace, step: int) -> float:
    """Megatron-style schedule: linear warmup, then constant / linear / cosine decay to --min-lr."""
    if args.lr_warmup_iters and step < args.lr_warmup_iters:
        return args.lr * (step + 1) / args.lr_warmup_iters
    if args.lr_decay_style == 'constant' or not args.lr_decay_iters:
        return args.lr
    progress = min(1.0, (step - args.lr_warmup_iters) / max(1, args.lr_decay_iters - args.lr_warmup_iters))
    if args.lr_decay_style == 'linear':
        return args.lr - (args.lr - args.min_lr) * progress
    return args.min_lr + (args.lr - args.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


@ray.remote
class TinyTrainRayActor:
    def __init__(self, args: dict[str, Any], world_size: int, knobs: dict[str, float]) -> None:
        torch.set_num_threads(1)
        self.args = SimpleNamespace(**args)
        self.rank = -1  # set when the ranks are ordered (node IP, GPU id) and join the group
        self.world_size = world_size
        self.knobs = knobs
        self.cfg: tiny_model.TinyConfig | None = None
        self.model: tiny_model.TinyMoE | None = None
        self.ref_model: tiny_model.TinyMoE | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.param_names: dict[int, str] = {}

    # --- process group ----------------------------------------------------------------------------------------

    def node_ip_and_gpu(self) -> tuple[str, str]:
        gpus = ray.get_gpu_ids()
        return ray.util.get_node_ip_address(), str(gpus[0]) if gpus else '0'

    def free_port(self) -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((ray.util.get_node_ip_address(), 0))
            return int(s.getsockname()[1])

    def init_process_group(self, master_addr: str, master_port: int, rank: int) -> None:
        self.rank = rank
        dist.init_process_group(
            'gloo',
            init_method=f'tcp://{master_addr}:{master_port}',
            rank=self.rank,
            world_size=self.world_size,
            timeout=timedelta(minutes=self.args.distributed_timeout_minutes),
            pg_options=sc.gloo_options(ray.util.get_node_ip_address()),
        )

    # --- model, optimizer, checkpoints ---------------------------------------------------------------------------

    def build(self, hf_config: dict[str, Any], load_dir: str, iteration: int | None, load_optimizer: bool, ref_dir: str | None) -> None:
        """Create the policy (and the reference model for the KL loss) and load their weights with DCP."""
        self.cfg = tiny_model.TinyConfig.from_json(hf_config)
        self.model = tiny_model.TinyMoE(self.cfg)
        self.model.train()
        params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.param_names = {id(p): n for n, p in params}
        a = self.args
        if a.optimizer == 'adam':
            self.optimizer = torch.optim.AdamW(
                [p for _, p in params], lr=a.lr, betas=(a.adam_beta1, a.adam_beta2), eps=a.adam_eps, weight_decay=a.weight_decay
            )
            for _, p in params:  # explicit state, so that DCP can load into it in place
                self.optimizer.state[p] = {
                    'step': torch.tensor(0.0),
                    'exp_avg': torch.zeros_like(p),
                    'exp_avg_sq': torch.zeros_like(p),
                }
        else:
            self.optimizer = torch.optim.SGD([p for _, p in params], lr=a.lr, weight_decay=a.weight_decay)
        state = self.model.state_dict()
        if load_optimizer:
            state.update(self._optimizer_state())
        dcp.load(state, checkpoint_id=load_dir)
        if self.rank == 0:
            parent = str(Path(load_dir).parent)
            sc.log(f'successfully loaded checkpoint from {parent} at iteration {iteration if iteration is not None else 0}')
        if ref_dir is not None:
            self.ref_model = tiny_model.TinyMoE(self.cfg)
            dcp.load(self.ref_model.state_dict(), checkpoint_id=ref_dir)
            self.ref_model.eval()
            for p in self.ref_model.parameters():
                p.requires_grad_(False)

    def _optimizer_state(self) -> dict[str, torch.Tensor]:
        assert self.optimizer is not None
        out: dict[str, torch.Tensor] = {}
        for p, st in self.optimizer.state.items():
            name = self.param_names[id(p)]
            for key, value in st.items():
                if isinstance(value, torch.Tensor):
                    out[f'{OPTIMIZER_PREFIX}{name}.{key}'] = value
        return out

    def save(self, save_dir: str, rollout_id: int, blocking_s: float | None = None) -> None:
        """iter_{rollout_id:07d}/ with weights + optimizer state (all ranks), then rank 0's side files and tracker.

        ``blocking_s`` (an async save, Megatron's --async-save): the call returns after that long (the staging); the
        rest of the save is the caller's to wait for, and ``finalize_save`` writes the side files and the tracker."""
        assert self.model is not None and self.cfg is not None
        save = Path(save_dir)
        target = save / sc.iteration_dir_name(rollout_id)
        if self.rank == 0:
            sc.log(f'saving checkpoint at iteration {rollout_id:7d} to {save} in torch_dist format')
            save.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(target, ignore_errors=True)  # a partial directory left by an interrupted save
            target.mkdir()
        dist.barrier()
        delay = self.knobs.get('save_sleep_s', 0.0) if blocking_s is None else blocking_s
        time.sleep(delay / 2)
        state = self.model.state_dict()
        state.update(self._optimizer_state())
        dcp.save(state, checkpoint_id=str(target))
        time.sleep(delay / 2)
        dist.barrier()
        if blocking_s is None:
            self.finalize_save(save_dir, rollout_id)
        elif self.rank == 0:
            # Megatron's line once the async save is scheduled (megatron/training/checkpointing.py save_checkpoint)
            sc.log(f'  scheduled an async checkpoint save at iteration {rollout_id:7d} to {save}')
        dist.barrier()

    def finalize_save(self, save_dir: str, rollout_id: int) -> None:
        """Rank 0: the padding files, the side files and the tracker: the checkpoint is complete from here on."""
        assert self.cfg is not None
        if self.rank != 0:
            return
        save = Path(save_dir)
        target = save / sc.iteration_dir_name(rollout_id)
        # TINY_SAVE_FILES: that many more (empty) files, as a sharded checkpoint of terabytes has, so that deleting
        # it takes real time
        padding = target / 'shards'
        for i in range(int(self.knobs.get('save_files', 0))):
            padding.mkdir(exist_ok=True)
            (padding / f'{i:07d}.distcp').touch()
        sc.write_checkpoint_side_files(target, rollout_id, self.cfg.to_json(), vars(self.args))
        sc.write_tracker(save, rollout_id)
        sc.log(f'successfully saved checkpoint from iteration {rollout_id:7d} to {save}')

    # --- sampling ------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def _sample(
        self, prompts: list[list[int]], max_new: int, temperature: float, top_p: float, gen: torch.Generator
    ) -> list[list[int]]:
        """Left-padded batch sampling with temperature and nucleus (top-p); PAD/BOS are never sampled."""
        assert self.model is not None
        model = self.model
        model.eval()
        width = max(len(p) for p in prompts)
        seqs = torch.full((len(prompts), width), PAD, dtype=torch.long)
        for i, p in enumerate(prompts):
            seqs[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        done = torch.zeros(len(prompts), dtype=torch.bool)
        outs: list[list[int]] = [[] for _ in prompts]
        for _ in range(max_new):
            logits = model(seqs)[:, -1, :].float()
            logits[:, PAD] = -math.inf
            logits[:, BOS] = -math.inf
            if temperature <= 0:
                nxt = logits.argmax(-1)
            else:
                probs = torch.softmax(logits / temperature, dim=-1)
                if top_p < 1.0:
                    sorted_p, order = probs.sort(-1, descending=True)
                    drop = sorted_p.cumsum(-1) - sorted_p > top_p
                    sorted_p = sorted_p.masked_fill(drop, 0.0)
                    probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
                nxt = torch.multinomial(probs, 1, generator=gen).squeeze(1)
            nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
            for i in torch.nonzero(~done).flatten().tolist():
                outs[i].append(int(nxt[i]))
            done = done | (nxt == EOS)
            seqs = torch.cat((seqs, nxt[:, None]), dim=1)
            if bool(done.all()):
                break
        model.train()
        return outs

    def generate(
        self, prompts: list[list[int]], n: int, max_new: int, temperature: float, top_p: float, seed: int, stretch: bool
    ) -> list[list[list[int]]]:
        """n responses for each prompt (token ids, EOS included when the model stopped)."""
        if stretch and self.knobs.get('rollout_sleep_s', 0.0) > 0:
            time.sleep(self.knobs['rollout_sleep_s'])
        if not prompts:
            return []
        gen = torch.Generator().manual_seed(seed)
        flat = [p for p in prompts for _ in range(n)]
        responses = self._sample(flat, max_new, temperature, top_p, gen)
        return [responses[i * n : (i + 1) * n] for i in range(len(prompts))]

    # --- GRPO update ---------------------------------------------------------------------------------------------

    def _batch(self, samples: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Right-padded [prompt + response] rows -> (input ids, next-token targets, response mask over targets)."""
        width = max(len(s['prompt']) + len(s['response']) for s in samples)
        ids = torch.full((len(samples), width), PAD, dtype=torch.long)
        mask = torch.zeros((len(samples), width - 1), dtype=torch.float32)
        for i, s in enumerate(samples):
            row = s['prompt'] + s['response']
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, len(s['prompt']) - 1 : len(row) - 1] = 1.0
        targets = torch.where(mask.bool(), ids[:, 1:], torch.full_like(ids[:, 1:], EOS))
        return ids, targets, mask

    def _logprobs(self, model: torch.nn.Module, ids: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token log-probabilities of the targets at the rollout temperature, and the entropy."""
        logits = model(ids)[:, :-1, :].float() / max(self.args.rollout_temperature, 1e-6)
        never = torch.zeros(logits.shape[-1], dtype=torch.bool)
        never[[PAD, BOS]] = True
        logits = logits.masked_fill(never, NEVER_LOGIT)  # finite, so that 0 * log p stays 0 in the backward pass
        logp = F.log_softmax(logits, dim=-1)
        entropy = -(logp.exp() * logp).sum(-1)
        return logp.gather(-1, targets[..., None]).squeeze(-1), entropy

    def _kl(self, logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
        log_ratio = logp - ref_logp
        kind = self.args.kl_loss_type
        if kind == 'k2':
            return log_ratio.pow(2) / 2
        if kind == 'low_var_kl':  # k3, as in slime: exp(ref - logp) - (ref - logp) - 1, clamped
            return (torch.exp(-log_ratio) + log_ratio - 1).clamp(-10, 10)
        return log_ratio  # 'kl' / 'k1'

    def train(self, rollout_id: int, samples: list[dict[str, Any]], num_steps: int, rollout_log: dict[str, float]) -> list[dict[str, float]]:
        """num_steps optimizer steps over this rank's samples (all ranks step together); returns the step metrics."""
        assert self.model is not None and self.optimizer is not None
        a = self.args
        if self.rank == 0:
            sc.log(f'rollout {rollout_id}: {sc.metrics_repr(rollout_log)}')
        started = time.monotonic()
        with torch.no_grad():
            if samples:
                ids, targets, _ = self._batch(samples)
                old_logp, _ = self._logprobs(self.model, ids, targets)
                ref_logp = self._logprobs(self.ref_model, ids, targets)[0] if self.ref_model is not None else None
        log_probs_time = time.monotonic() - started
        chunks = split_evenly(list(range(len(samples))), num_steps)
        params = [p for group in self.optimizer.param_groups for p in group['params']]
        results = []
        for step_in_rollout, chunk in enumerate(chunks):
            step = rollout_id * num_steps + step_in_rollout
            lr = learning_rate(a, step)
            for group in self.optimizer.param_groups:
                group['lr'] = lr
            self.optimizer.zero_grad(set_to_none=False)
            sums = torch.zeros(7)
            count = torch.tensor([float(len(chunk))])
            dist.all_reduce(count)
            if chunk:
                sub = [samples[i] for i in chunk]
                ids, targets, mask = self._batch(sub)
                logp, entropy = self._logprobs(self.model, ids, targets)
                old = old_logp[chunk][:, : logp.shape[1]]
                adv = torch.tensor([s['advantage'] for s in sub], dtype=torch.float32)[:, None]
                ratio = torch.exp(logp - old)
                pg1 = -adv * ratio
                pg2 = -adv * ratio.clamp(1 - a.eps_clip, 1 + a.eps_clip_high)
                pg_loss = masked_mean(torch.maximum(pg1, pg2), mask)
                loss = pg_loss - a.entropy_coef * masked_mean(entropy, mask)
                kl = torch.zeros_like(pg_loss)
                if ref_logp is not None:
                    kl = masked_mean(self._kl(logp, ref_logp[chunk][:, : logp.shape[1]]), mask)
                    loss = loss + a.kl_loss_coef * kl
                (loss.sum() / count.clamp(min=1)).backward()
                with torch.no_grad():
                    sums += torch.stack(
                        [
                            loss.sum(),
                            pg_loss.sum(),
                            kl.sum(),
                            masked_mean(entropy, mask).sum(),
                            masked_mean((pg2 > pg1).float(), mask).sum(),
                            masked_mean(old - logp, mask).sum(),
                            torch.tensor(0.0),
                        ]
                    )
            grads = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])
            dist.all_reduce(grads)
            dist.all_reduce(sums)
            grad_norm = float(grads.norm())
            if not math.isfinite(grad_norm):
                raise FloatingPointError(f'rollout {rollout_id} step {step}: gradient norm is {grad_norm}')
            scale = a.clip_grad / (grad_norm + 1e-6) if a.clip_grad > 0 and grad_norm > a.clip_grad else 1.0
            offset = 0
            for p in params:
                n = p.numel()
                p.grad = (grads[offset : offset + n] * scale).view_as(p).clone()
                offset += n
            self.optimizer.step()
            total = max(float(count), 1.0)
            metrics = {
                'train/loss': float(sums[0]) / total,
                'train/pg_loss': float(sums[1]) / total,
                'train/kl_loss': float(sums[2]) / total,
                'train/entropy_loss': float(sums[3]) / total,
                'train/pg_clipfrac': float(sums[4]) / total,
                'train/ppo_kl': float(sums[5]) / total,
                'train/grad_norm': grad_norm,
                'train/lr-pg_0': lr,
            }
            if self.rank == 0:
                sc.log(f'step {step}: {sc.metrics_repr(metrics)}')
            results.append(metrics)
        if self.rank == 0:
            perf = {'perf/log_probs_time': log_probs_time, 'perf/train_time': time.monotonic() - started}
            sc.log(f'perf {rollout_id}: {sc.metrics_repr(perf)}')
        return results
