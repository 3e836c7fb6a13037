"""Augmented transfer sets for distillation: extra texts that the teacher labels with soft targets.

Generators (each with a size ``multiplier`` relative to the training set):
- ``mask``: each word replaced by the mask (or unk) token with probability ``p`` (Tang et al. 2019,
  "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks", arXiv:1903.12136);
- ``ngram``: a random contiguous span of ``min_n``..``max_n`` words (Tang et al. 2019);
- ``shuffle``: words shuffled within windows of ``window`` words;
- ``mix``: the first half of one training text joined to the second half of another.

Unlabeled pools join the transfer set too (Tang et al. 2019; Nityasya et al. 2022: small students gain
most from a larger transfer set labelled by the teacher): a user's file (``augment.unlabeled_file``) or
the configured pools (``augment=unlabeled_bn``), read by one reader (:func:`read_unlabeled`), capped,
and optionally filtered on the teacher's confidence and balanced over its predicted classes
(:func:`select_unlabeled`). Augmented examples have no hard label (``-100``): the CE term skips them
and only the soft-target term trains on them. Texts equal to a validation or test text are never
emitted: they are dropped and counted. Everything is deterministic under ``seed``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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
    """Augmented texts and where each came from (a generator or an unlabeled pool); ``report`` counts them
    per source and the drops. ``index``: each text's position in the set it was selected from (its id)."""

    texts: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    report: dict = field(default_factory=dict)
    index: list[int] | None = None

    def ids(self) -> list[int]:
        return [TRANSFER_ID_BASE + i for i in (self.index if self.index is not None else range(len(self.texts)))]

    def subset(self, keep: Sequence[int], report: dict) -> TransferSet:
        """The texts at positions ``keep`` (ids kept), with ``report`` merged into the report."""
        ids = self.index if self.index is not None else list(range(len(self.texts)))
        counts: dict[str, int] = {}
        for i in keep:
            counts[self.sources[i]] = counts.get(self.sources[i], 0) + 1
        merged = {**self.report, **report, "kept": counts, "total": len(keep)}
        return TransferSet(
            [self.texts[i] for i in keep], [self.sources[i] for i in keep], merged, [ids[i] for i in keep]
        )


def read_unlabeled(path: str | Path, text_column: str = "text", key: str = "augment.unlabeled_file") -> list[str]:
    """The texts of an unlabeled file: a CSV/TSV/XLSX table's ``text_column`` (any other column, labels
    included, is ignored), or one text per line of any other file (UTF-8).

    Raises:
        FileNotFoundError: the file does not exist (naming ``key``).
        DataError: a table without ``text_column``, a file with no text, or one that is not UTF-8 text.
    """
    from bertcompress.data.readers import DataError, read_table

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{key}={path}: no such file (a CSV/TSV/XLSX with a {text_column!r} column, or one text per line)"
        )
    if path.suffix.lower() not in {".csv", ".tsv", ".xlsx", ".xls"}:
        texts = _text_lines(path, key)
    else:
        df = read_table(path, key=key)
        if text_column not in df.columns:
            raise DataError(
                f"{path}: no column {text_column!r} (columns: {list(df.columns)}); set the pool's text_column"
            )
        texts = [str(t) for t in df[text_column].tolist() if isinstance(t, str) and t.strip()]
    if not texts:
        raise DataError(f"{key}={path}: the file holds no text; give one text per line, or a table with texts")
    return texts


def _text_lines(path: Path, key: str) -> list[str]:
    """The non-blank lines of a UTF-8 text file (:func:`bertcompress_runtime.text.read_text_lines`).

    Raises:
        DataError: bytes that are not UTF-8, or NUL bytes (a binary file), naming ``key``, the byte and line.
    """
    from bertcompress_runtime.text import read_text_lines

    from bertcompress.data.readers import DataError

    try:
        return read_text_lines(path, f"{key}={path}")
    except ValueError as e:
        raise DataError(str(e)) from e


def select_unlabeled(
    probs: np.ndarray,
    sources: Sequence[str],
    pools: Sequence[str],
    min_confidence: float | None = None,
    balance: bool = False,
    max_texts: int | None = None,
    seed: int = 0,
) -> tuple[list[int], dict]:
    """Which transfer-set texts to keep, from the teacher's probabilities ``probs`` (N, C) at T=1: every
    generated text (a source not in ``pools``), and of the pool texts those whose top probability is at
    least ``min_confidence``, then, with ``balance``, the same number per predicted class (the smallest
    predicted class's count, or ``max_texts`` // the classes predicted), then at most ``max_texts`` of
    them (seeded samples).

    Returns:
        ``(kept positions in order, report)``; the report counts the drops and the predicted classes kept.

    Raises:
        ValueError: ``min_confidence`` outside [0, 1] or a negative ``max_texts``.
    """
    if min_confidence is not None and not 0.0 <= float(min_confidence) <= 1.0:
        raise ValueError(f"augment.unlabeled.min_confidence={min_confidence}: must lie in [0, 1]")
    if max_texts is not None and int(max_texts) < 0:
        raise ValueError(f"augment.unlabeled.max_texts={max_texts}: must be >= 0")
    rng = np.random.default_rng(seed)
    pool = np.array([s in set(pools) for s in sources], dtype=bool)
    conf, pred = probs.max(-1), probs.argmax(-1)
    ok = pool & (conf >= float(min_confidence)) if min_confidence is not None else pool.copy()
    report = {"dropped_low_confidence": int((pool & ~ok).sum())}
    candidates = np.flatnonzero(ok)
    if balance and len(candidates):
        classes = np.unique(pred[candidates])  # the classes the teacher predicts on the pools
        per_class = min(int((pred[candidates] == c).sum()) for c in classes)
        if max_texts is not None:
            per_class = min(per_class, int(max_texts) // len(classes))
        picked = [rng.permutation(candidates[pred[candidates] == c])[:per_class] for c in classes]
        candidates = np.sort(np.concatenate(picked)) if picked else candidates[:0]
        report["per_class"] = per_class
    if max_texts is not None and len(candidates) > int(max_texts):
        candidates = np.sort(rng.choice(candidates, int(max_texts), replace=False))
    keep = sorted(np.flatnonzero(~pool).tolist() + candidates.tolist())
    report["predicted_classes_kept"] = {
        int(c): int(n) for c, n in zip(*np.unique(pred[candidates], return_counts=True), strict=True)
    }
    return keep, report


def build_transfer_set(
    train_texts: Sequence[str],
    forbidden_texts: Sequence[str],
    generators: dict,
    seed: int = 0,
    mask_token: str = "<mask>",
    unlabeled: dict[str, Sequence[str]] | None = None,
    max_unlabeled: int | None = None,
) -> TransferSet:
    """Generate the transfer set from the training texts only.

    Args:
        train_texts: the training split's texts (the only source of augmentation).
        forbidden_texts: validation and test texts; an output equal to one (whitespace-normalised) is dropped.
        generators: ``{name: {"multiplier": float, ...params}}`` with names from :data:`GENERATORS`.
        mask_token: what ``mask`` writes (the teacher tokenizer's mask or unk token).
        unlabeled: ``{pool name: texts}`` (:func:`read_unlabeled`), added as they are (minus forbidden texts),
            each text's source the pool's name.
        max_unlabeled: at most this many pool texts (a seeded sample of their union; None: all).

    Raises:
        ValueError: an unknown generator or a negative multiplier (naming it).
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
    pooled = [(name, text) for name, texts in (unlabeled or {}).items() for text in texts]
    if max_unlabeled is not None and len(pooled) > int(max_unlabeled):
        pooled = [pooled[i] for i in sorted(rng.sample(range(len(pooled)), int(max_unlabeled)))]
    for name, text in pooled:
        emit(text, name)
    out.report["total"] = len(out.texts)
    return out
