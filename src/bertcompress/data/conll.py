"""Sequence labeling data in the CoNLL format (CoNLL-2003 NER and any file like it).

Format (Tjong Kim Sang & De Meulder 2003): one token per line, space-separated fields, the token
first and the tag last (``token POS chunk NER`` in CoNLL-2003); a blank line ends a sentence and
``-DOCSTART-`` lines mark document boundaries. Tags are BIO (IOB2): ``O``, ``B-TYPE``, ``I-TYPE``.

Subword alignment is the standard one of the HF token-classification examples
(https://huggingface.co/docs/transformers/tasks/token_classification): the first subword of a word
carries the word's tag, the other subwords and the special tokens get ``-100`` (ignored by the
loss and the metrics).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bertcompress.data.encoding import TextEncoder
from bertcompress.data.readers import DataError

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
BIO_TAG = re.compile(r"^(O|[BI]-\S+)$")
DOCSTART = "-DOCSTART-"


@dataclass
class Sentence:
    """One sentence: its words, their BIO tags and the 1-based line of its first word."""

    tokens: list[str]
    tags: list[str]
    line: int


def read_conll(path: str | Path, tag_column: int = -1, key: str = "data.train_file") -> list[Sentence]:
    """Read a CoNLL-format file into sentences.

    Args:
        path: the file (UTF-8).
        tag_column: which whitespace-separated field holds the tag (default: the last).
        key: the config key that names the file, quoted when it is missing.

    Raises:
        FileNotFoundError: naming the path.
        DataError: ``<file>:<line>`` for a line with fewer than 2 fields (a token and a tag), a line with
            another number of fields than the first token line, or a tag outside the BIO scheme, and for a
            file with no sentence at all.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CoNLL file not found: {path}: pass {key}=/abs/path, or set BERTCOMPRESS_DATA_DIR")
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0
    width: tuple[int, int] | None = None  # (fields, line) of the first token line: every line must match it

    def flush():
        nonlocal tokens, tags
        if tokens:
            sentences.append(Sentence(tokens, tags, start))
        tokens, tags = [], []

    with path.open(encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line:
                flush()
                continue
            fields = line.split()
            if fields[0] == DOCSTART:
                flush()
                continue
            if len(fields) < 2:
                raise DataError(
                    f"{path}:{lineno}: malformed line {line!r}: expected 'token ... tag' (at least 2 space-separated "
                    "fields); fix the line or remove it"
                )
            if width is None:
                width = (len(fields), lineno)
            elif len(fields) != width[0]:
                raise DataError(
                    f"{path}:{lineno}: {len(fields)} columns in {line!r}, expected {width[0]} as on the first token "
                    f"line ({path}:{width[1]}); a missing field would shift the tag column. Fix the line or remove it"
                )
            tag = fields[tag_column]
            if not BIO_TAG.match(tag):
                raise DataError(
                    f"{path}:{lineno}: tag {tag!r} is not in the BIO scheme (O, B-TYPE, I-TYPE); convert the file to "
                    "IOB2 or set data.tag_column to the tag field"
                )
            if not tokens:
                start = lineno
            tokens.append(fields[0])
            tags.append(tag)
    flush()
    if not sentences:
        raise DataError(f"{path}: no sentence found (empty file, or only -DOCSTART-/blank lines)")
    return sentences


def align_labels(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """Token labels from word labels: the first subword of each word gets its label, every other
    position (later subwords, special tokens: ``word_id`` None) gets ``-100``.

    Args:
        word_ids: per token, the index of its word or None (``BatchEncoding.word_ids(i)``), length T.
        word_labels: per word, a label id.

    Returns:
        T label ids.
    """
    out, previous = [], None
    for w in word_ids:
        out.append(IGNORE_INDEX if w is None or w == previous else int(word_labels[w]))
        if w is not None:
            previous = w
    return out


class TokenEncoder(TextEncoder):
    """A :class:`TextEncoder` for pre-split words (``is_split_into_words=True``).

    ``__call__(sentences)`` returns token ids; :meth:`encode` also returns the aligned token labels
    and the word index of each label-carrying position.
    """

    def _normalized(self, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        if self.normalizer is None:
            return [list(s) for s in sentences]
        return [[self.normalizer(w) for w in s] for s in sentences]

    def _tokenize(self, sentences):
        return self.tokenizer(
            self._normalized(sentences), is_split_into_words=True, truncation=True, max_length=self.max_length
        )

    def __call__(self, sentences: Sequence[Sequence[str]]) -> list[list[int]]:
        return self._tokenize(sentences)["input_ids"] if sentences else []

    def encode(
        self, sentences: Sequence[Sequence[str]], labels: Sequence[Sequence[int]] | None = None
    ) -> tuple[list[list[int]], list[list[int]]]:
        """Token ids and aligned labels (T per sentence). Without ``labels`` every word gets 0, which
        marks the first subwords (the positions a prediction is read from)."""
        if not sentences:
            return [], []
        enc = self._tokenize(sentences)
        aligned = []
        for i, s in enumerate(sentences):
            word_labels = labels[i] if labels is not None else [0] * len(s)
            aligned.append(align_labels(enc.word_ids(i), word_labels))
        return enc["input_ids"], aligned


class TokenPadCollator:
    """Pads ``input_ids`` with the tokenizer's pad id and ``labels`` with ``-100``
    (``transformers.DataCollatorForTokenClassification``). Output (B, T) tensors and ``id`` (B,)."""

    def __init__(self, tokenizer):
        from transformers import DataCollatorForTokenClassification

        self._collate = DataCollatorForTokenClassification(tokenizer, padding="longest", return_tensors="pt")

    def __call__(self, items: list[dict]) -> dict:
        return dict(self._collate(items))


def word_predictions(
    label_rows: Sequence[Sequence[int]], pred_rows, n_words: Sequence[int], fill: int
) -> list[list[int]]:
    """Per sentence, the predicted label id of each word, read at the first-subword positions
    (``label_rows[i][t] != -100``); words cut off by truncation get ``fill`` (the ``O`` tag)."""
    out = []
    for labels, preds, n in zip(label_rows, pred_rows, n_words, strict=True):
        words = [int(p) for lab, p in zip(labels, preds, strict=False) if lab != IGNORE_INDEX][:n]
        out.append(words + [fill] * (n - len(words)))
    return out
