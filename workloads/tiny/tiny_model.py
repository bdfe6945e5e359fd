"""A tiny DeepSeek-V3-shaped decoder (multi-head latent attention + a mixture of experts), CPU torch.

Stand-in for DeepSeek-V3/R1 in the tiny-local preset, not DeepSeek's code. Config fields, parameter names and
parameter shapes follow the Hugging Face DeepSeek-V3 layout (``model.layers.{i}.self_attn.q_a_proj.weight``,
``model.layers.{i}.mlp.experts.{e}.gate_proj.weight``, ...), so the FP8 release, the cast and the conversion see
the same tensor names as with the real weights. Simplifications: no multi-token-prediction layer, no expert
groups (n_group = topk_group = 1), rotary embedding without YaRN scaling, no KV cache in generation.

Checkpoint directories (Hugging Face layout): ``config.json``, ``model.safetensors.index.json`` and shards
``model-0000K-of-0000N.safetensors``. ``load_hf_dir`` reads FP32, BF16 or the FP8 release (``weight`` F8_E4M3 +
``weight_scale_inv`` F32 with 128x128 blocks, dequantized on load); ``save_hf_dir`` writes FP32 or BF16.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

INDEX_FILE = 'model.safetensors.index.json'
CONFIG_FILE = 'config.json'
FP8_BLOCK = 128
FP8_MAX = 448.0  # largest finite float8_e4m3fn
SCALE_SUFFIX = '_scale_inv'


@dataclass
class TinyConfig:
    """Model hyper-parameters, named as in DeepSeek-V3's config.json."""

    vocab_size: int = 64
    hidden_size: int = 160
    intermediate_size: int = 320
    moe_intermediate_size: int = 96
    num_hidden_layers: int = 4
    first_k_dense_replace: int = 1
    moe_layer_freq: int = 1
    n_routed_experts: int = 8
    n_shared_experts: int = 1
    num_experts_per_tok: int = 2
    routed_scaling_factor: float = 1.0
    norm_topk_prob: bool = True
    scoring_func: str = 'sigmoid'
    topk_method: str = 'noaux_tc'
    n_group: int = 1
    topk_group: int = 1
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    q_lora_rank: int = 96
    kv_lora_rank: int = 64
    qk_rope_head_dim: int = 16
    qk_nope_head_dim: int = 32
    v_head_dim: int = 32
    max_position_embeddings: int = 64
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    hidden_act: str = 'silu'
    initializer_range: float = 0.02
    attention_bias: bool = False
    attention_dropout: float = 0.0
    tie_word_embeddings: bool = False
    num_nextn_predict_layers: int = 0
    ep_size: int = 1
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int = 0
    torch_dtype: str = 'float32'
    extra: dict[str, Any] = field(default_factory=dict)  # other keys of config.json, kept on a round trip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TinyConfig:
        names = {f.name for f in dataclasses.fields(cls)} - {'extra'}
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names and k not in ('architectures', 'model_type')}
        return cls(**known, extra=extra)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {'architectures': ['DeepseekV3ForCausalLM'], 'model_type': 'deepseek_v3'}
        for f in dataclasses.fields(self):
            if f.name != 'extra':
                data[f.name] = getattr(self, f.name)
        data.update(self.extra)
        return data

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rope(positions: torch.Tensor, dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of shape [B, 1, T, dim] for integer positions [B, T]."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    angles = positions.to(torch.float32)[..., None] * inv_freq
    emb = torch.cat((angles, angles), dim=-1)[:, None, :, :]
    return emb.cos(), emb.sin()


class Attention(nn.Module):
    """Multi-head latent attention with V3's projections (low-rank q, compressed kv + a shared rope key)."""

    def __init__(self, cfg: TinyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        heads = cfg.num_attention_heads
        self.q_a_proj = nn.Linear(cfg.hidden_size, cfg.q_lora_rank, bias=False)
        self.q_a_layernorm = RMSNorm(cfg.q_lora_rank, cfg.rms_norm_eps)
        self.q_b_proj = nn.Linear(cfg.q_lora_rank, heads * cfg.qk_head_dim, bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(cfg.hidden_size, cfg.kv_lora_rank + cfg.qk_rope_head_dim, bias=False)
        self.kv_a_layernorm = RMSNorm(cfg.kv_lora_rank, cfg.rms_norm_eps)
        self.kv_b_proj = nn.Linear(cfg.kv_lora_rank, heads * (cfg.qk_nope_head_dim + cfg.v_head_dim), bias=False)
        self.o_proj = nn.Linear(heads * cfg.v_head_dim, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        b, t, _ = x.shape
        h = cfg.num_attention_heads
        q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x))).view(b, t, h, cfg.qk_head_dim).transpose(1, 2)
        q_nope, q_pe = q.split([cfg.qk_nope_head_dim, cfg.qk_rope_head_dim], dim=-1)
        compressed, k_pe = self.kv_a_proj_with_mqa(x).split([cfg.kv_lora_rank, cfg.qk_rope_head_dim], dim=-1)
        k_pe = k_pe.view(b, 1, t, cfg.qk_rope_head_dim)
        kv = self.kv_b_proj(self.kv_a_layernorm(compressed))
        kv = kv.view(b, t, h, cfg.qk_nope_head_dim + cfg.v_head_dim).transpose(1, 2)
        k_nope, v = kv.split([cfg.qk_nope_head_dim, cfg.v_head_dim], dim=-1)
        q_pe = q_pe * cos + _rotate_half(q_pe) * sin
        k_pe = k_pe * cos + _rotate_half(k_pe) * sin
        query = torch.cat((q_nope, q_pe), dim=-1)
        key = torch.cat((k_nope, k_pe.expand(b, h, t, cfg.qk_rope_head_dim)), dim=-1)
        out = F.scaled_dot_product_attention(query, key, v, attn_mask=mask, scale=1.0 / math.sqrt(cfg.qk_head_dim))
        return self.o_proj(out.transpose(1, 2).reshape(b, t, h * cfg.v_head_dim))


class MLP(nn.Module):
    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class MoEGate(nn.Module):
    """V3's router: sigmoid scores; experts chosen on score + e_score_correction_bias; weights from the scores."""

    def __init__(self, cfg: TinyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.weight = nn.Parameter(torch.empty(cfg.n_routed_experts, cfg.hidden_size))
        # Aux-loss-free balancing bias: adjusted outside the optimizer (see update_balance_bias), never by gradients.
        self.e_score_correction_bias = nn.Parameter(torch.zeros(cfg.n_routed_experts), requires_grad=False)
        self.last_load: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = torch.sigmoid(F.linear(x.float(), self.weight.float()))
        chosen = torch.topk(scores + self.e_score_correction_bias, self.cfg.num_experts_per_tok, dim=-1).indices
        weights = scores.gather(-1, chosen)
        if self.cfg.norm_topk_prob:
            weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
        if self.training:
            self.last_load = torch.bincount(chosen.flatten(), minlength=self.cfg.n_routed_experts).detach()
        return chosen, weights * self.cfg.routed_scaling_factor

    @torch.no_grad()
    def update_balance_bias(self, rate: float) -> None:
        """Nudge the bias towards balanced expert load (DeepSeek-V3's auxiliary-loss-free strategy)."""
        if self.last_load is None:
            return
        load = self.last_load.float()
        self.e_score_correction_bias += rate * torch.sign(load.mean() - load)


class MoE(nn.Module):
    def __init__(self, cfg: TinyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.gate = MoEGate(cfg)
        self.experts = nn.ModuleList(
            MLP(cfg.hidden_size, cfg.moe_intermediate_size) for _ in range(cfg.n_routed_experts)
        )
        self.shared_experts = MLP(cfg.hidden_size, cfg.moe_intermediate_size * cfg.n_shared_experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        chosen, weights = self.gate(flat)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            rows, slots = torch.nonzero(chosen == e, as_tuple=True)
            if rows.numel() == 0:
                continue
            contribution = expert(flat[rows]) * weights[rows, slots, None].to(flat.dtype)
            out = out.index_add(0, rows, contribution)
        return (out + self.shared_experts(flat)).view(shape)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TinyConfig, layer_idx: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        dense = layer_idx < cfg.first_k_dense_replace or layer_idx % cfg.moe_layer_freq != 0
        self.mlp: nn.Module = MLP(cfg.hidden_size, cfg.intermediate_size) if dense else MoE(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Backbone(nn.Module):
    def __init__(self, cfg: TinyConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class TinyMoE(nn.Module):
    """DeepseekV3ForCausalLM-shaped model: ``model.*`` (embeddings, layers, final norm) and ``lm_head``."""

    def __init__(self, cfg: TinyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = Backbone(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.cfg.initializer_range)
        elif isinstance(module, MoEGate):
            nn.init.normal_(module.weight, mean=0.0, std=self.cfg.initializer_range)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, T, vocab] for token ids [B, T]. Padding (left or right) is the PAD id unless a mask is given."""
        if attention_mask is None:
            attention_mask = input_ids != self.cfg.pad_token_id
        attention_mask = attention_mask.bool()
        t = input_ids.shape[1]
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        cos, sin = _rope(positions, self.cfg.qk_rope_head_dim, self.cfg.rope_theta)
        causal = torch.ones(t, t, dtype=torch.bool, device=input_ids.device).tril()
        eye = torch.eye(t, dtype=torch.bool, device=input_ids.device)
        # A query sees earlier real tokens; every position also sees itself so padded rows never go all -inf.
        mask = ((causal[None] & attention_mask[:, None, :]) | eye[None])[:, None, :, :]
        x = self.model.embed_tokens(input_ids)
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask)
        return self.lm_head(self.model.norm(x))

    def gates(self) -> list[MoEGate]:
        return [m for m in self.modules() if isinstance(m, MoEGate)]

    @torch.no_grad()
    def generate(
        self,
        prompts_ids: Sequence[Sequence[int]],
        max_new_tokens: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> list[list[int]]:
        """Sample continuations for a batch of prompts (left-padded together).

        Returns one list of new token ids per prompt, ending with EOS when the model stopped (the EOS is included),
        otherwise max_new_tokens long. temperature <= 0 means greedy decoding.
        """
        was_training = self.training
        self.eval()
        pad, eos = self.cfg.pad_token_id, self.cfg.eos_token_id
        width = max(len(p) for p in prompts_ids)
        seqs = torch.full((len(prompts_ids), width), pad, dtype=torch.long)
        for i, p in enumerate(prompts_ids):
            seqs[i, width - len(p) :] = torch.tensor(list(p), dtype=torch.long)
        done = torch.zeros(len(prompts_ids), dtype=torch.bool)
        outs: list[list[int]] = [[] for _ in prompts_ids]
        for _ in range(max_new_tokens):
            logits = self.forward(seqs)[:, -1, :].float()
            if temperature <= 0:
                nxt = logits.argmax(-1)
            else:
                probs = torch.softmax(logits / temperature, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
            for i in torch.nonzero(~done).flatten().tolist():
                outs[i].append(int(nxt[i]))
            done = done | (nxt == eos)
            seqs = torch.cat((seqs, nxt[:, None]), dim=1)
            if bool(done.all()):
                break
        self.train(was_training)
        return outs


# --- FP8 blockwise quantization (the layout of the DeepSeek-V3/R1 release) ----------------------------------


def _pad_to_blocks(w: torch.Tensor) -> torch.Tensor:
    m, n = w.shape
    return F.pad(w, (0, (-n) % FP8_BLOCK, 0, (-m) % FP8_BLOCK))


def quantize_fp8_blockwise(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """2-D weight -> (float8_e4m3fn weight, F32 scale_inv [ceil(M/128), ceil(N/128)]) with value = fp8 * scale."""
    m, n = weight.shape
    w = _pad_to_blocks(weight.float())
    mb, nb = w.shape[0] // FP8_BLOCK, w.shape[1] // FP8_BLOCK
    blocks = w.view(mb, FP8_BLOCK, nb, FP8_BLOCK)
    amax = blocks.abs().amax(dim=(1, 3))
    scale = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax)).float()
    q = (blocks / scale[:, None, :, None]).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return q.view(mb * FP8_BLOCK, nb * FP8_BLOCK)[:m, :n].contiguous(), scale.contiguous()


def dequantize_fp8_blockwise(q: torch.Tensor, scale_inv: torch.Tensor) -> torch.Tensor:
    """Inverse of quantize_fp8_blockwise, in float32: element (i, j) is fp8[i, j] * scale_inv[i // 128, j // 128]."""
    m, n = q.shape
    expanded = scale_inv.float().repeat_interleave(FP8_BLOCK, 0).repeat_interleave(FP8_BLOCK, 1)[:m, :n]
    return q.float() * expanded


# --- Hugging Face checkpoint directories ----------------------------------------------------------------------


def shard_name(k: int, n: int) -> str:
    return f'model-{k:05d}-of-{n:05d}.safetensors'


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(text, encoding='utf-8')
    os.replace(tmp, path)


def write_sharded(
    out_dir: Path,
    tensors: Sequence[tuple[str, torch.Tensor]],
    shards: int,
    may_cut_after: Callable[[str], bool] | None = None,
    index_metadata: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Write tensors (in order) into `shards` safetensors files of about equal size, then the index LAST.

    A shard boundary falls only after a tensor for which may_cut_after(name) holds (default: any tensor).
    Any existing index is removed first, so a directory is never taken as complete while shards are rewritten.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / INDEX_FILE).unlink(missing_ok=True)
    sizes = [t.numel() * t.element_size() for _, t in tensors]
    total = sum(sizes)
    groups: list[list[int]] = [[]]
    running = 0
    for i, size in enumerate(sizes):
        groups[-1].append(i)
        running += size
        target = total * len(groups) / shards
        name = tensors[i][0]
        last = i == len(tensors) - 1
        if len(groups) < shards and running >= target and not last and (may_cut_after is None or may_cut_after(name)):
            groups.append([])
    if len(groups) != shards:
        raise ValueError(f'could not split {len(tensors)} tensors into {shards} shards')
    weight_map: dict[str, str] = {}
    for k, group in enumerate(groups, start=1):
        name = shard_name(k, shards)
        part = {tensors[i][0]: tensors[i][1].contiguous() for i in group}
        tmp = out_dir / (name + '.tmp')
        save_file(part, str(tmp), metadata={'format': 'pt'})
        os.chmod(tmp, 0o644)
        os.replace(tmp, out_dir / name)
        weight_map.update({key: name for key in part})
    index = {'metadata': {'total_size': total, **(index_metadata or {})}, 'weight_map': dict(sorted(weight_map.items()))}
    _atomic_write_text(out_dir / INDEX_FILE, json.dumps(index, indent=2) + '\n')
    return weight_map


def write_config(out_dir: Path, cfg: TinyConfig, extra: dict[str, Any] | None = None) -> None:
    data = cfg.to_json()
    data.update(extra or {})
    out_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(out_dir / CONFIG_FILE, json.dumps(data, indent=2) + '\n')


def save_hf_dir(model: TinyMoE, cfg: TinyConfig, path: str | Path, dtype: str = 'float32', shards: int = 2) -> None:
    """Write config.json (no quantization_config) and `shards` shards in float32 or bfloat16, index last."""
    torch_dtype = {'float32': torch.float32, 'bfloat16': torch.bfloat16}[dtype]
    out = Path(path)
    saved_cfg = dataclasses.replace(cfg, torch_dtype=dtype, extra={**cfg.extra})
    saved_cfg.extra.pop('quantization_config', None)
    write_config(out, saved_cfg)
    tensors = [(k, v.detach().to(torch_dtype)) for k, v in model.state_dict().items()]
    write_sharded(out, tensors, shards)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint directory as float32; FP8 weights are dequantized with their scales."""
    root = Path(path)
    index_path = root / INDEX_FILE
    if index_path.exists():
        files = sorted(set(json.loads(index_path.read_text())['weight_map'].values()))
    else:
        files = ['model.safetensors']
    raw: dict[str, torch.Tensor] = {}
    for name in files:
        raw.update(load_file(str(root / name)))
    state: dict[str, torch.Tensor] = {}
    for key, tensor in raw.items():
        if key.endswith(SCALE_SUFFIX):
            continue
        if tensor.dtype == torch.float8_e4m3fn:
            scale = raw.get(key + SCALE_SUFFIX)
            if scale is None:
                raise ValueError(f'FP8 tensor {key} has no {key}{SCALE_SUFFIX}')
            state[key] = dequantize_fp8_blockwise(tensor, scale)
        else:
            state[key] = tensor.float()
    return state


def load_hf_dir(path: str | Path) -> tuple[TinyConfig, TinyMoE]:
    """Read config.json + index + shards (FP32, BF16 or FP8 with scales) into a float32 TinyMoE."""
    cfg = TinyConfig.from_json(json.loads((Path(path) / CONFIG_FILE).read_text()))
    model = TinyMoE(cfg)
    model.load_state_dict(read_state_dict(path), strict=True)
    return cfg, model
