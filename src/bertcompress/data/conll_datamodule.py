"""The sequence-labeling datamodule: CoNLL-format files, the tag set, subword-aligned labels."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from bertcompress.data.conll import TokenEncoder, TokenPadCollator, read_conll
from bertcompress.data.datamodule import ClassificationDataModule
from bertcompress.data.encoding import EncodedDataset, TextEncoder
from bertcompress.data.readers import DataError

log = logging.getLogger(__name__)


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

    def view(self, encoder=None, max_length=None, transfer=None, shuffle_seed=None) -> ConllDataModule:
        """:meth:`ClassificationDataModule.view`; a sequence labeler has no augmented transfer set."""
        if transfer is not None and len(transfer[0]):
            raise ValueError("augmented transfer sets are for text classification; task=ner has none (augment=none)")
        return super().view(encoder, max_length, shuffle_seed=shuffle_seed)

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
            raise RuntimeError(
                "task=ner needs a TokenEncoder (pre-split words); use datamodule.view(TokenEncoder(...))"
            )
        key = (id(encoder), split)
        if key not in self._encoded:
            input_ids, labels = encoder.encode(self.texts(split), self.label_ids(split))
            self._encoded[key] = EncodedDataset(self.ids(split), input_ids, labels)
        return self._encoded[key]

    def make_encoder(self, tokenizer, max_length: int | None = None, normalizer=None) -> TokenEncoder:
        return TokenEncoder(tokenizer, max_length or self.max_length, normalizer)

    def collator(self, encoder: TextEncoder) -> Callable:
        return TokenPadCollator(encoder.tokenizer)
