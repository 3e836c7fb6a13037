"""Augmented transfer sets for distillation: extra texts that the teacher labels with soft targets.

Generators (each with a size ``multiplier`` relative to the training set):
- ``mask``: each word replaced by the mask (or unk) token with probability ``p`` (Tang et al. 2019,
  "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks", arXiv:1903.12136);
- ``ngram``: a random contiguous span of ``min_n``..``max_n`` words (Tang et al. 2019);
- ``shuffle``: words shuffled within windows of ``window`` words;
- ``mix``: the first half of one training text joined to the second half of another.

Optionally the lines of an unlabeled text file join the transfer set. Augmented examples have no hard
label (``-100``): the CE term skips them and only the soft-target term trains on them (Nityasya et
al. 2022). Texts equal to a validation or test text are never emitted: they are dropped and counted.
Everything is deterministic under ``seed``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

GENERATORS = ("mask", "ngram", "shuffle", "mix")
# ids of transfer-set examples start here, far above any corpus row id
TRANSFER_ID_BASE = 10**12


def _norm(text: str) -> str:
    return " ".join(str(text).split())


def mask_words(words: list[str], rng: random.Random, p: float = 0.1, token: str = "<mask>") -> list[str]:
    """Each word replaced by ``token`` with probability ``p``."""
    return [token if rng.random() < p else w for w in words]


def ngram_span(words: list[str], rng: random.Random, min_n: int = 3, max_n: int = 8) -> list[str]:
    """A random contiguous span of ``min_n``..``max_n`` words (the whole text when shorter)."""
    if len(words) <= min_n:
        return list(words)
    n = rng.randint(min_n, min(max_n, len(words)))
    start = rng.randint(0, len(words) - n)
    return words[start : start + n]


def shuffle_window(words: list[str], rng: random.Random, window: int = 3) -> list[str]:
    """Words shuffled within consecutive windows of ``window`` words."""
    out = []
    for i in range(0, len(words), window):
        chunk = words[i : i + window]
        rng.shuffle(chunk)
        out.extend(chunk)
    return out


def mix_texts(a: list[str], b: list[str]) -> list[str]:
    """The first half of ``a`` followed by the second half of ``b``."""
    return a[: max(1, len(a) // 2)] + b[len(b) // 2 :]


@dataclass
class TransferSet:
    """Augmented texts and where each came from; ``report`` counts them per generator and the drops."""

    texts: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    report: dict = field(default_factory=dict)

    def ids(self) -> list[int]:
        return [TRANSFER_ID_BASE + i for i in range(len(self.texts))]


def build_transfer_set(
    train_texts: Sequence[str],
    forbidden_texts: Sequence[str],
    generators: dict,
    seed: int = 0,
    mask_token: str = "<mask>",
    unlabeled_file: str | Path | None = None,
) -> TransferSet:
    """Generate the transfer set from the training texts only.

    Args:
        train_texts: the training split's texts (the only source of augmentation).
        forbidden_texts: validation and test texts; an output equal to one (whitespace-normalised) is dropped.
        generators: ``{name: {"multiplier": float, ...params}}`` with names from :data:`GENERATORS`.
        mask_token: what ``mask`` writes (the teacher tokenizer's mask or unk token).
        unlabeled_file: optional UTF-8 text file, one text per line, added as is (minus forbidden lines).

    Raises:
        ValueError: an unknown generator or a negative multiplier (naming it).
        FileNotFoundError: the unlabeled file does not exist.
    """
    rng = random.Random(seed)
    forbidden = {_norm(t) for t in forbidden_texts}
    words = [str(t).split() for t in train_texts]
    out = TransferSet(report={"generated": {}, "dropped_equal_to_val_or_test": 0, "dropped_empty": 0})
    seen: set[str] = set()

    def emit(text: str, source: str) -> None:
        key = _norm(text)
        if not key:
            out.report["dropped_empty"] += 1
        elif key in forbidden:
            out.report["dropped_equal_to_val_or_test"] += 1
        elif key not in seen:
            seen.add(key)
            out.texts.append(key)
            out.sources.append(source)
            out.report["generated"][source] = out.report["generated"].get(source, 0) + 1

    for name, params in (generators or {}).items():
        params = dict(params or {})
        if name not in GENERATORS:
            raise ValueError(f"augment.generators.{name}: unknown generator; expected one of {GENERATORS}")
        multiplier = float(params.pop("multiplier", 1.0))
        if multiplier < 0:
            raise ValueError(f"augment.generators.{name}.multiplier={multiplier}: must be >= 0")
        n = round(multiplier * len(words))
        for _ in range(n):
            w = words[rng.randrange(len(words))]
            if name == "mask":
                new = mask_words(w, rng, float(params.get("p", 0.1)), mask_token)
            elif name == "ngram":
                new = ngram_span(w, rng, int(params.get("min_n", 3)), int(params.get("max_n", 8)))
            elif name == "shuffle":
                new = shuffle_window(list(w), rng, int(params.get("window", 3)))
            else:
                new = mix_texts(w, words[rng.randrange(len(words))])
            emit(" ".join(new), name)
    if unlabeled_file:
        path = Path(unlabeled_file)
        if not path.is_file():
            raise FileNotFoundError(f"augment.unlabeled_file={path}: no such file (one text per line, UTF-8)")
        for line in path.read_text(encoding="utf-8").splitlines():
            emit(line, "unlabeled_file")
    out.report["total"] = len(out.texts)
    return out
