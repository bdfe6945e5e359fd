"""CPU stand-in for slime's tools/fp8_cast_bf16.py (not slime's code): FP8 blockwise weights -> BF16.

    python fp8_cast_bf16.py --input-fp8-hf-path IN --output-bf16-hf-path OUT

Same arguments and output contract as the reference: every shard of IN is written to OUT under the same file name;
a tensor stored as float8_e4m3fn with a "<name>_scale_inv" (F32, [ceil(M/128), ceil(N/128)], possibly in another
shard) becomes bf16(fp32(fp8) * scale) elementwise per 128x128 block; "*_scale_inv" tensors are dropped; an FP8
tensor without a scale is copied as is with a warning; other tensors are copied unchanged.
The files are what the reference writes: shards by safetensors' save_file with no metadata, and
model.safetensors.index.json as {"metadata": {}, "weight_map": ...} in the input's order without the scales of the
weights it cast (json.dump, indent 2, no final newline), written LAST. config.json, *.py, tokenizer* and
chat_template* are copied unchanged (quantization_config stays).
Like the reference it does not resume: a re-run rewrites every shard.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

INDEX_FILE = 'model.safetensors.index.json'
SCALE_SUFFIX = '_scale_inv'
BLOCK = 128
COPIED_PATTERNS = ('config.json', '*.py', 'tokenizer*', 'chat_template*')


def dequantize(weight: torch.Tensor, scale_inv: torch.Tensor) -> torch.Tensor:
    m, n = weight.shape
    scale = scale_inv.float().repeat_interleave(BLOCK, 0).repeat_interleave(BLOCK, 1)[:m, :n]
    return (weight.float() * scale).to(torch.bfloat16)


def read_tensor(root: Path, file_name: str, key: str) -> torch.Tensor:
    with safe_open(str(root / file_name), framework='pt') as f:
        return f.get_tensor(key)


def cast_shard(src: Path, dst: Path, file_name: str, weight_map: dict[str, str]) -> list[str]:
    """Cast one shard; returns the names of the weights it cast."""
    out: dict[str, torch.Tensor] = {}
    cast: list[str] = []
    with safe_open(str(src / file_name), framework='pt') as f:
        for key in f.keys():
            if key.endswith(SCALE_SUFFIX):
                continue
            tensor = f.get_tensor(key)
            if tensor.element_size() == 1 and tensor.dim() == 2:
                scale_file = weight_map.get(key + SCALE_SUFFIX)
                if scale_file is None:
                    print(f'Warning: missing scale_inv tensor for {key}, skipping conversion', file=sys.stderr)
                else:
                    tensor = dequantize(tensor, read_tensor(src, scale_file, key + SCALE_SUFFIX))
                    cast.append(key)
            out[key] = tensor
    tmp = dst / (file_name + '.tmp')
    save_file(out, str(tmp))
    os.chmod(tmp, 0o644)
    os.replace(tmp, dst / file_name)
    return cast


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description='FP8 (128x128 block scales) -> BF16 cast, CPU stand-in')
    parser.add_argument('--input-fp8-hf-path', required=True, type=Path)
    parser.add_argument('--output-bf16-hf-path', required=True, type=Path)
    args = parser.parse_args(argv)
    src: Path = args.input_fp8_hf_path
    dst: Path = args.output_bf16_hf_path
    dst.mkdir(parents=True, exist_ok=True)
    (dst / INDEX_FILE).unlink(missing_ok=True)
    weight_map: dict[str, str] = json.loads((src / INDEX_FILE).read_text())['weight_map']
    for pattern in COPIED_PATTERNS:
        for path in sorted(src.glob(pattern)):
            if path.is_file():
                shutil.copyfile(path, dst / path.name)
    dropped: set[str] = set()
    for file_name in sorted(set(weight_map.values())):
        dropped.update(key + SCALE_SUFFIX for key in cast_shard(src, dst, file_name, weight_map))
        print(f'cast {file_name}', flush=True)
    index = {'metadata': {}, 'weight_map': {k: v for k, v in weight_map.items() if k not in dropped}}
    tmp = dst / (INDEX_FILE + '.tmp')
    tmp.write_text(json.dumps(index, indent=2), encoding='utf-8')
    os.replace(tmp, dst / INDEX_FILE)
    return 0


if __name__ == '__main__':
    sys.exit(main())
