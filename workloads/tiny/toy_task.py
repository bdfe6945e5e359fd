"""The toy task of the tiny-local preset: two-number addition with a verifiable answer.

Prompt format (exact): ``"{a}+{b}="`` with ``a`` and ``b`` integers in [0, 99] written without leading zeros,
e.g. ``"37+8="``. The answer (label) is the decimal sum, e.g. ``"45"``. A response is correct when, after
stripping surrounding whitespace, it equals the label exactly (``reward`` returns 1.0, otherwise 0.0).

Tokenizer: one token per character over a small fixed alphabet, plus three special tokens:
``PAD`` (0), ``BOS`` (1) and ``EOS`` (2). A model sees ``[BOS] + encode(prompt)`` and is trained to answer
``encode(label) + [EOS]``. ``decode`` drops special tokens and stops at the first ``EOS``.

Stand-in for the verifiable-math datasets of the DeepSeek-R1 recipe (not one of them): a tiny model learns it
partly in a minute of CPU pretraining, and RL on the exact-match reward can improve it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path

PAD = 0
BOS = 1
EOS = 2
SPECIAL_TOKENS = ['<pad>', '<s>', '</s>']
# Characters after the specials. Only digits, '+' and '=' occur in the task; the rest keeps the vocabulary
# general enough for tokenizer files and for responses that are not answers.
ALPHABET = '0123456789+-*=()?:. abcdefghijklmnopqrstuvwxyz'
VOCAB: list[str] = SPECIAL_TOKENS + list(ALPHABET)
CHAR_TO_ID: dict[str, int] = {ch: i + len(SPECIAL_TOKENS) for i, ch in enumerate(ALPHABET)}
VOCAB_SIZE = len(VOCAB)

MAX_OPERAND = 99
MAX_ANSWER_TOKENS = 3  # "198" is the longest answer; EOS follows it
PROMPT_FORMAT = '{a}+{b}='


def encode(text: str) -> list[int]:
    """Characters -> token ids (no BOS/EOS added). Unknown characters raise ValueError."""
    try:
        return [CHAR_TO_ID[ch] for ch in text]
    except KeyError as err:
        raise ValueError(f'character {err.args[0]!r} is not in the toy vocabulary') from None


def decode(ids: Iterable[int]) -> str:
    """Token ids -> text: stops at the first EOS, skips PAD/BOS and ids outside the vocabulary."""
    out: list[str] = []
    for i in ids:
        i = int(i)
        if i == EOS:
            break
        if i < len(SPECIAL_TOKENS) or i >= VOCAB_SIZE:
            continue
        out.append(VOCAB[i])
    return ''.join(out)


def make_prompt(a: int, b: int) -> str:
    return PROMPT_FORMAT.format(a=a, b=b)


def prompt_ids(prompt: str) -> list[int]:
    """What a model is fed for a prompt: [BOS] + encode(prompt)."""
    return [BOS] + encode(prompt)


def answer(a: int, b: int) -> str:
    return str(a + b)


def reward(response: str, label: str) -> float:
    """1.0 when the response (whitespace-stripped) is exactly the label, else 0.0."""
    return 1.0 if response.strip() == label.strip() else 0.0


def all_pairs() -> list[tuple[int, int]]:
    return [(a, b) for a in range(MAX_OPERAND + 1) for b in range(MAX_OPERAND + 1)]


def _example(a: int, b: int) -> dict[str, str]:
    return {'prompt': make_prompt(a, b), 'label': answer(a, b)}


def make_dataset(n: int, seed: int) -> list[dict[str, str]]:
    """n distinct problems (n <= 10000) drawn with a seeded RNG: [{"prompt": "37+8=", "label": "45"}, ...]."""
    pairs = all_pairs()
    if n > len(pairs):
        raise ValueError(f'at most {len(pairs)} distinct problems exist, asked for {n}')
    rng = random.Random(seed)
    return [_example(a, b) for a, b in rng.sample(pairs, n)]


def make_splits(n_train: int, n_eval: int, seed: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Disjoint train and eval splits (no problem appears in both)."""
    data = make_dataset(n_train + n_eval, seed)
    return data[:n_train], data[n_train:]


def pretraining_pairs(exclude_prompts: set[str]) -> list[tuple[int, int]]:
    """Every problem whose prompt is not in exclude_prompts (the eval split stays unseen in pretraining)."""
    return [(a, b) for a, b in all_pairs() if make_prompt(a, b) not in exclude_prompts]


def write_jsonl(path: Path, rows: Iterable[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + '.tmp')
    with tmp.open('w', encoding='utf-8') as f:
        for row in rows:
            f.write(json.dumps(row) + '\n')
    tmp.replace(path)


def read_jsonl(path: Path) -> list[dict[str, str]]:
    with path.open(encoding='utf-8') as f:
        return [json.loads(line) for line in f if line.strip()]
