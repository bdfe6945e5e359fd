"""Compare a native FP8 -> BF16 cast output with the PyTorch reference arithmetic, bit for bit.

    python compare_with_torch.py INPUT_DIR OUTPUT_DIR

Reference, per FP8 weight: (w.float() * scale_expanded).to(torch.bfloat16), the scale expanded to 128x128 blocks and
cut at the edges. NaNs are compared apart: where the reference is NaN the cast must hold 0x7FFF (what the GPU
reference writes; PyTorch's CPU build writes another NaN pattern). Every other tensor must be equal byte for byte.
Both directories are read with the safetensors library (so the files must be ones it accepts). Prints one JSON
object with the counts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors import safe_open

INDEX = 'model.safetensors.index.json'
SUFFIX = '_scale_inv'


def expanded(scale: torch.Tensor, rows: int, columns: int) -> torch.Tensor:
    return scale.float().repeat_interleave(128, 0).repeat_interleave(128, 1)[:rows, :columns]


def main(src: Path, dst: Path) -> dict:
    in_map: dict[str, str] = json.loads((src / INDEX).read_text())['weight_map']
    out_index = json.loads((dst / INDEX).read_text())
    out_map: dict[str, str] = out_index['weight_map']
    report = {
        'tensors': 0, 'fp8Tensors': 0, 'elements': 0, 'mismatches': 0, 'nanElements': 0, 'nanMismatches': 0,
        'copied': 0, 'copyMismatches': 0, 'codesCovered': 0, 'subnormalOutputs': 0, 'infOutputs': 0,
        'firstMismatch': None,
        'indexOk': out_map == {k: v for k, v in in_map.items() if not k.endswith(SUFFIX)} and out_index['metadata'] == {},
        'metadataOk': True,
    }
    codes: set[int] = set()
    for shard in sorted(set(in_map.values())):
        with safe_open(str(dst / shard), framework='pt') as out_file:
            report['metadataOk'] = report['metadataOk'] and out_file.metadata() == {'format': 'pt'}
            out_keys = set(out_file.keys())
            with safe_open(str(src / shard), framework='pt') as in_file:
                for key in in_file.keys():
                    if key.endswith(SUFFIX):
                        continue
                    report['tensors'] += 1
                    if key not in out_keys:
                        report['copyMismatches'] += 1
                        continue
                    w = in_file.get_tensor(key)
                    got = out_file.get_tensor(key)
                    if w.dtype == torch.float8_e4m3fn:
                        scale_shard = in_map[key + SUFFIX]
                        with safe_open(str(src / scale_shard), framework='pt') as scale_file:
                            scale = scale_file.get_tensor(key + SUFFIX)
                        ref = (w.float() * expanded(scale, *w.shape)).to(torch.bfloat16)
                        codes.update(w.view(torch.uint8).unique().tolist())
                        ref_bits, got_bits = ref.view(torch.int16), got.view(torch.int16)
                        nan = torch.isnan(ref)
                        wrong = (ref_bits != got_bits) & ~nan
                        report['fp8Tensors'] += 1
                        report['elements'] += ref.numel()
                        report['mismatches'] += int(wrong.sum())
                        report['nanElements'] += int(nan.sum())
                        report['nanMismatches'] += int((got_bits[nan] != 0x7FFF).sum())
                        magnitude = got_bits & 0x7FFF
                        report['subnormalOutputs'] += int(((magnitude > 0) & (magnitude < 0x80)).sum())
                        report['infOutputs'] += int((magnitude == 0x7F80).sum())
                        if report['firstMismatch'] is None and bool(wrong.any()):
                            i = int(wrong.flatten().nonzero()[0])
                            report['firstMismatch'] = {
                                'tensor': key, 'index': i, 'code': int(w.view(torch.uint8).flatten()[i]),
                                'reference': int(ref_bits.flatten()[i]) & 0xFFFF, 'cast': int(got_bits.flatten()[i]) & 0xFFFF,
                            }
                    else:
                        report['copied'] += 1
                        same = got.dtype == w.dtype and got.shape == w.shape and torch.equal(
                            got.flatten().view(torch.uint8), w.flatten().view(torch.uint8))
                        report['copyMismatches'] += 0 if same else 1
    report['codesCovered'] = len(codes)
    return report


if __name__ == '__main__':
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]))))
