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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bertcompress.data.datamodule import ClassificationDataModule, EncodedDataset, TextEncoder
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


class ConllDataModule(ClassificationDataModule):
    """Sequence labeling from CoNLL-format files: ``texts(split)`` are word lists, ``label_ids(split)``
    lists of tag ids, and the datasets carry subword-aligned labels (see :func:`align_labels`).

    Args:
        train_file / val_file / test_file: CoNLL files; without a val file, ``val_size`` of train is
            carved out (seeded); without a test file, ``test_size``.
        labels: the tag set in id order; None reads it from the train file (``O`` first, then the
            sorted ``B-``/``I-`` tags). It is saved with the model (``id2label``).
        tag_column: the field of the tag (default: the last).

    ``id`` is ``file_index * 10,000,000 + sentence index`` (train 0, val 1, test 2).
    """

    task = "ner"

    def __init__(
        self,
        train_file: str,
        val_file: str | None = None,
        test_file: str | None = None,
        tag_column: int = -1,
        test_size: float = 0.2,
        split_seed: int = 42,
        name: str = "conll",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.files = {
            "train": Path(train_file),
            "val": Path(val_file) if val_file else None,
            "test": Path(test_file) if test_file else None,
        }
        self.tag_column, self.test_size, self.split_seed = tag_column, test_size, split_seed

    def source_files(self) -> list[Path]:
        return [p for p in self.files.values() if p is not None]

    def split_config(self) -> dict:
        return {"test_size": self.test_size if self.files["test"] is None else None, "split_seed": self.split_seed}

    def _frame(self, split: str, index: int) -> pd.DataFrame:
        sentences = read_conll(self.files[split], self.tag_column, key=f"data.{split}_file")
        return pd.DataFrame(
            {
                "id": [index * 10_000_000 + i for i in range(len(sentences))],
                "text": [s.tokens for s in sentences],
                "label": [s.tags for s in sentences],
                "line": [s.line for s in sentences],
            }
        )

    def load_splits(self) -> dict[str, pd.DataFrame | None]:
        train = self._frame("train", 0)
        val = self._frame("val", 1) if self.files["val"] else None
        if self.files["test"]:
            test = self._frame("test", 2)
        else:
            test = train.sample(frac=self.test_size, random_state=self.split_seed)
            train = train.drop(test.index)
        return {"train": train, "val": val, "test": test}

    def setup(self, stage: str | None = None) -> None:
        if self.frames is not None:
            return
        frames = self.load_splits()
        if self.labels is None:  # the tags of the whole train file, O first, then by type: B- before I-
            whole = [frames["train"]] if self.files["test"] else [frames["train"], frames["test"]]  # before the carve
            tags = {t for df in whole for row in df["label"] for t in row}
            self.labels = ["O", *sorted(tags - {"O"}, key=lambda t: (t[2:], t[0]))]
        if frames["val"] is None:
            train = frames["train"]
            if isinstance(self.val_size, float):
                val = train.sample(frac=self.val_size, random_state=self.seed)
            else:
                val = train.sample(n=int(self.val_size), random_state=self.seed)
            frames["train"], frames["val"] = train.drop(val.index), val
        known = set(self.labels)
        for split, df in frames.items():
            for row, line in zip(df["label"], df["line"], strict=True):
                unknown = sorted(set(row) - known)
                if unknown:
                    raise DataError(
                        f"{self.files.get(split) or self.files['train']}:{line}: tags {unknown} are not in the label "
                        f"set {self.labels} (read from the train file); add them to data.labels"
                    )
        for split, limit in self.limits.items():  # the first sentences: Buuri 2022 uses the first 1,000
            if limit is not None:
                frames[split] = frames[split].head(int(limit))
        self.frames = {k: v.reset_index(drop=True) for k, v in frames.items()}
        log.info("%s: %s sentences", self.name, {k: len(v) for k, v in self.frames.items()})

    def label_ids(self, split: str) -> list[list[int]]:
        """Tag ids per word, per sentence."""
        self.setup()
        if split == "transfer":
            raise ValueError("augmented transfer sets are for text classification; task=ner has none (augment=none)")
        index = {name: i for i, name in enumerate(self.labels)}
        return [[index[t] for t in row] for row in self.frames[split]["label"]]

    def set_transfer(self, ids, texts=None) -> None:
        if ids is not None:
            raise ValueError("augmented transfer sets are for text classification; task=ner has none (augment=none)")
        self.transfer = None

    def summary(self) -> dict:
        """Sentences, tokens and entities (by type) per split."""
        self.setup()
        out = {"name": self.name, "task": "ner", "labels": self.labels, "sizes": {}, "tokens": {}, "entities": {}}
        for split, df in self.frames.items():
            out["sizes"][split] = len(df)
            out["tokens"][split] = int(sum(len(t) for t in df["text"]))
            counts: dict[str, int] = {}
            for row in df["label"]:
                for t in row:
                    if t.startswith("B-"):
                        counts[t[2:]] = counts.get(t[2:], 0) + 1
            out["entities"][split] = dict(sorted(counts.items()))
        return out

    def dataset(self, split: str, encoder: TextEncoder | None = None) -> EncodedDataset:
        """Tokenize ``split`` with its aligned labels (``encoder`` must be a :class:`TokenEncoder`)."""
        self.setup()
        encoder = encoder or self.encoder
        if not isinstance(encoder, TokenEncoder):
            raise RuntimeError("task=ner needs a TokenEncoder (pre-split words); call set_encoder(TokenEncoder(...))")
        key = (id(encoder), split)
        if key not in self._encoded:
            input_ids, labels = encoder.encode(self.texts(split), self.label_ids(split))
            self._encoded[key] = EncodedDataset(self.ids(split), input_ids, labels)
        return self._encoded[key]

    def make_encoder(self, tokenizer, max_length: int | None = None, normalizer=None) -> TokenEncoder:
        return TokenEncoder(tokenizer, max_length or self.max_length, normalizer)

    def collator(self, encoder: TextEncoder) -> Callable:
        return TokenPadCollator(encoder.tokenizer)
