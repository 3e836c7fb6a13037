"""LightningDataModules for text classification: UBMEC and any CSV/TSV/XLSX text/label file.

Every example keeps a stable integer ``id`` (derived from its file and row) so that later
stages (teacher-logit caches, distillation) align examples by id, never by batch position.
The raw texts are kept; each model tokenizes them itself through a :class:`TextEncoder`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from bertcompress.data.readers import DataError, clean_frame, infer_labels, read_table
from bertcompress.data.splits import carve_validation, clean_split, paper_split, stratified_head
from bertcompress.utils.io import file_sha256

log = logging.getLogger(__name__)

UBMEC_LABELS = ("anger", "disgust", "fear", "joy", "sadness", "surprise")
UBMEC_UPSTREAM = "https://github.com/Sakibsourav019/UBMEC-Unified-Bangla-Multi-class-Emotion-Corpus-"
SPLITS = ("train", "val", "test")
# ids of examples from the n-th file of a multi-file corpus are n * ID_STRIDE + row
ID_STRIDE = 10_000_000


@dataclass
class TextEncoder:
    """Turns raw texts into token ids for one model: optional text normalizer, then tokenizer.

    Attributes:
        tokenizer: a HF (fast) tokenizer.
        max_length: truncation length in tokens (special tokens included).
        normalizer: optional ``str -> str`` applied first (e.g. BanglaBERT's normalizer).
    """

    tokenizer: object
    max_length: int = 128
    normalizer: Callable[[str], str] | None = None

    def __call__(self, texts: Sequence[str]) -> list[list[int]]:
        if self.normalizer is not None:
            texts = [self.normalizer(t) for t in texts]
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)
        return enc["input_ids"]


class EncodedDataset(Dataset):
    """Tokenized examples: dicts with ``id`` (int), ``input_ids`` (list[int]), ``labels`` (int)."""

    def __init__(self, ids: Sequence[int], input_ids: Sequence[list[int]], labels: Sequence[int]):
        if not (len(ids) == len(input_ids) == len(labels)):
            raise ValueError("ids, input_ids and labels must have the same length")
        self.ids, self.input_ids, self.labels = list(ids), list(input_ids), list(labels)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"id": self.ids[i], "input_ids": self.input_ids[i], "labels": self.labels[i]}


class PadCollator:
    """Dynamic padding to the longest sequence of the batch (``transformers.DataCollatorWithPadding``).

    Output: ``input_ids`` and ``attention_mask`` (B, T) int64, ``labels`` (B,), ``id`` (B,).
    """

    def __init__(self, tokenizer):
        from transformers import DataCollatorWithPadding

        self._collate = DataCollatorWithPadding(tokenizer, padding="longest", return_tensors="pt")

    def __call__(self, items: list[dict]) -> dict:
        return dict(self._collate(items))


class EpochShuffleSampler(torch.utils.data.Sampler):
    """A shuffled order that depends only on (seed, epoch), as ``DistributedSampler`` does: Lightning calls
    :meth:`set_epoch` before each epoch, so a fit resumed at epoch k sees the order the uninterrupted fit saw."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())


class ClassificationDataModule(L.LightningDataModule):
    """Base class: subclasses implement :meth:`load_splits`; this class does the rest.

    Args:
        name: corpus name, used in cache keys and results.
        labels: the label names in a fixed order (index = class id); None infers sorted train labels.
        max_length: tokens per example after truncation (dynamic padding below that).
        batch_size / eval_batch_size: examples per batch for training / evaluation.
        val_size: fraction (or count) of train carved out, stratified and seeded, for early stopping,
            when the corpus has no validation file.
        seed: seed of the validation carve and of the subsets.
        limit_train / limit_val / limit_test: optional sizes of seeded stratified subsets (smoke runs).
        num_workers: DataLoader workers.
    """

    # the task family: ``classification`` (one label per text) or ``ner`` (one tag per word)
    task = "classification"

    def __init__(
        self,
        name: str,
        labels: Sequence[str] | None = None,
        max_length: int = 128,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        val_size: float | int = 0.1,
        seed: int = 42,
        limit_train: int | None = None,
        limit_val: int | None = None,
        limit_test: int | None = None,
        num_workers: int = 0,
    ):
        super().__init__()
        self.name = name
        self.labels = list(labels) if labels is not None else None
        self.max_length = max_length
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.val_size = val_size
        self.seed = seed
        self.limits = {"train": limit_train, "val": limit_val, "test": limit_test}
        self.num_workers = num_workers
        self.frames: dict[str, pd.DataFrame] | None = None
        self.split_report: dict = {}
        self.encoder: TextEncoder | None = None
        self._encoded: dict[tuple[int, str], EncodedDataset] = {}
        # the augmented transfer set (distillation only): texts with ids, no hard labels
        self.transfer: tuple[list[int], list[str]] | None = None

    # ---- to implement -------------------------------------------------------------------
    def load_splits(self) -> dict[str, pd.DataFrame | None]:
        """Return frames with ``id``, ``text``, ``label`` for ``train``, ``test`` and optionally ``val``."""
        raise NotImplementedError

    def source_files(self) -> list[Path]:
        """The files the data comes from (their sha256 enters cache keys)."""
        raise NotImplementedError

    def split_config(self) -> dict:
        """Split parameters that change which example lands where (enters cache keys)."""
        return {}

    # ---- set-up --------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.frames is not None:
            return
        frames = self.load_splits()
        train, val, test = frames["train"], frames.get("val"), frames["test"]
        if val is None:
            train, val = carve_validation(train, self.val_size, self.seed)
        frames = {"train": train, "val": val, "test": test}
        if self.labels is None:
            self.labels = infer_labels([(self.name, train)])
        for split, df in frames.items():
            unknown = sorted(set(df["label"]) - set(self.labels))
            if unknown:
                raise DataError(f"{self.name}: {split} split has labels {unknown} not in the label set {self.labels}")
        for split in SPLITS:
            frames[split] = stratified_head(frames[split], self.limits[split], self.seed).reset_index(drop=True)
        self.frames = frames
        log.info("%s: %s", self.name, {k: len(v) for k, v in frames.items()})

    @property
    def num_labels(self) -> int:
        self.setup()
        return len(self.labels)

    def label_ids(self, split: str) -> list[int]:
        """Class ids of ``split``; the ``transfer`` split has none (``-100``: the CE term skips them)."""
        self.setup()
        if split == "transfer":
            return [-100] * len(self.ids("transfer"))
        index = {name: i for i, name in enumerate(self.labels)}
        return [index[x] for x in self.frames[split]["label"]]

    def texts(self, split: str) -> list[str]:
        self.setup()
        if split == "transfer":
            return list(self.transfer[1]) if self.transfer else []
        return self.frames[split]["text"].tolist()

    def ids(self, split: str) -> list[int]:
        self.setup()
        if split == "transfer":
            return list(self.transfer[0]) if self.transfer else []
        return self.frames[split]["id"].astype(int).tolist()

    def set_transfer(self, ids: Sequence[int] | None, texts: Sequence[str] | None = None) -> None:
        """Add an augmented transfer set to the training loader (``None`` removes it). Its examples carry
        no hard label; they need teacher soft targets (a SoftTargetCallback that knows their ids).

        Raises:
            ValueError: ids that collide with corpus ids, or ids/texts of different lengths.
        """
        for key in [k for k in self._encoded if k[1] == "transfer"]:
            del self._encoded[key]
        if ids is None:
            self.transfer = None
            return
        ids, texts = list(ids), list(texts or [])
        if len(ids) != len(texts):
            raise ValueError(f"transfer set: {len(ids)} ids but {len(texts)} texts")
        clash = set(ids) & {i for s in SPLITS for i in self.ids(s)}
        if clash:
            raise ValueError(f"transfer-set ids {sorted(clash)[:5]} collide with corpus example ids")
        self.transfer = (ids, texts)

    def summary(self) -> dict:
        """Counts per split and per label, plus the split report (for results.json)."""
        self.setup()
        return {
            "name": self.name,
            "labels": self.labels,
            "sizes": {k: len(v) for k, v in self.frames.items()},
            "label_counts": {
                k: v["label"].value_counts().reindex(self.labels, fill_value=0).to_dict()
                for k, v in self.frames.items()
            },
            "split_report": self.split_report,
        }

    def fingerprint(self) -> dict:
        """Everything that decides the examples and their split: enters teacher and logit cache keys."""
        return {
            "name": self.name,
            "files": {p.name: file_sha256(p) for p in self.source_files()},
            "labels": self.labels,
            "split": self.split_config(),
            "val_size": self.val_size,
            "seed": self.seed,
            "limits": self.limits,
        }

    # ---- loaders ---------------------------------------------------------------------------
    def make_encoder(self, tokenizer, max_length: int | None = None, normalizer=None) -> TextEncoder:
        """The encoder this task reads its texts with (a :class:`TextEncoder`: raw texts in)."""
        return TextEncoder(tokenizer, max_length or self.max_length, normalizer)

    def collator(self, encoder: TextEncoder) -> Callable:
        """Pads a batch of encoded examples (dynamic padding)."""
        return PadCollator(encoder.tokenizer)

    def set_encoder(self, encoder: TextEncoder) -> None:
        """Set the encoder used by the ``*_dataloader`` hooks (the model being trained)."""
        self.encoder = encoder

    def dataset(self, split: str, encoder: TextEncoder | None = None) -> EncodedDataset:
        """Tokenize ``split`` with ``encoder`` (default: the one set), memoised per encoder."""
        self.setup()
        encoder = encoder or self.encoder
        if encoder is None:
            raise RuntimeError("No TextEncoder set: call datamodule.set_encoder(...) first.")
        key = (id(encoder), split)
        if key not in self._encoded:
            self._encoded[key] = EncodedDataset(self.ids(split), encoder(self.texts(split)), self.label_ids(split))
        return self._encoded[key]

    def loader(
        self, split: str, encoder: TextEncoder | None = None, shuffle: bool = False, batch_size: int | None = None
    ) -> DataLoader:
        encoder = encoder or self.encoder
        bs = batch_size or (self.batch_size if split == "train" else self.eval_batch_size)
        return self._loader(self.dataset(split, encoder), encoder, bs, shuffle)

    def _loader(self, ds, encoder: TextEncoder, batch_size: int, shuffle: bool) -> DataLoader:
        # the loader's own generator (worker base seeds) and a per-epoch sampler: iterating it never draws
        # from the global RNG, whose per-epoch state drives dropout (bertcompress.utils.seeding.SeedEachEpoch)
        return DataLoader(
            ds,
            batch_size=batch_size,
            sampler=EpochShuffleSampler(len(ds), self.seed) if shuffle else None,
            collate_fn=self.collator(encoder),
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        if not self.transfer:
            return self.loader("train", shuffle=True)
        parts = [self.dataset("train"), self.dataset("transfer")]  # the transfer set joins training only
        return self._loader(torch.utils.data.ConcatDataset(parts), self.encoder, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")


class UBMECDataModule(ClassificationDataModule):
    """UBMEC (Sourav et al. 2022), 6 Bengali emotions, read from the real xlsx.

    Args:
        path: the xlsx; default ``${BERTCOMPRESS_DATA_DIR}/ubmec/ubmec.xlsx``.
        split: ``paper`` (Rahman et al. 2025's exact 9,150/3,922 split) or ``clean``
            (NFC, conflicting labels dropped, test texts seen in train removed).
        test_size / split_seed: the train/test split (0.3 / 42 in the paper).

    ``id`` is the 0-based file row. Raises FileNotFoundError naming the path, the env var
    and the upstream URL when the file is missing; DataError for bad columns or labels.
    """

    def __init__(
        self,
        path: str,
        split: str = "paper",
        test_size: float = 0.3,
        split_seed: int = 42,
        sheet: str | int = 0,
        name: str = "ubmec",
        **kwargs,
    ):
        kwargs.setdefault("labels", UBMEC_LABELS)
        super().__init__(name=name, **kwargs)
        if split not in {"paper", "clean"}:
            raise ValueError(f"data.split={split!r}: expected 'paper' or 'clean'")
        self.path = Path(path)
        self.split = split
        self.test_size = test_size
        self.split_seed = split_seed
        self.sheet = sheet

    def source_files(self) -> list[Path]:
        return [self.path]

    def split_config(self) -> dict:
        return {"split": self.split, "test_size": self.test_size, "split_seed": self.split_seed}

    def load_splits(self) -> dict[str, pd.DataFrame | None]:
        raw = read_table(self.path, sheet=self.sheet, upstream=UBMEC_UPSTREAM, key="data.path")
        df, report = clean_frame(raw, self.path, "text", "classes", self.labels)
        df["id"] = df["row"]
        self.split_report = {"cleaning": report.as_dict()}
        if self.split == "paper":
            train, test = paper_split(df, self.test_size, self.split_seed)
        else:
            train, test, rep = clean_split(df, self.test_size, self.split_seed)
            self.split_report["clean"] = rep
        return {"train": train, "test": test, "val": None}


class CsvDataModule(ClassificationDataModule):
    """Any text/label table (CSV, TSV or XLSX; named columns), with optional val/test files.

    Args:
        train_file: the training table (or the only table, split by ``test_size``).
        val_file / test_file: optional; without a test file, ``test_size`` of train is held out
            (stratified, ``split_seed``); without a val file, ``val_size`` is carved from train.
        text_column / label_column: column names (or the names given by ``column_names``).
        header / column_names: for files with no header line (e.g. IndoNLU SmSA).
        sep: the delimiter (default: tab for .tsv, comma otherwise).
        encoding: the text encoding of a CSV/TSV file (default utf-8; e.g. cp1252 for Windows exports).

    ``id`` is ``file_index * 10,000,000 + row`` (train file 0, val 1, test 2).
    """

    def __init__(
        self,
        train_file: str,
        text_column: str = "text",
        label_column: str = "label",
        val_file: str | None = None,
        test_file: str | None = None,
        test_size: float = 0.2,
        split_seed: int = 42,
        sep: str | None = None,
        header: bool = True,
        column_names: Sequence[str] | None = None,
        sheet: str | int = 0,
        name: str = "csv",
        upstream: str | None = None,
        encoding: str = "utf-8",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.files = {
            "train": Path(train_file),
            "val": Path(val_file) if val_file else None,
            "test": Path(test_file) if test_file else None,
        }
        self.text_column, self.label_column = text_column, label_column
        self.test_size, self.split_seed = test_size, split_seed
        self.read_kwargs = dict(
            sep=sep, header=header, column_names=column_names, sheet=sheet, upstream=upstream, encoding=encoding
        )

    def source_files(self) -> list[Path]:
        return [p for p in self.files.values() if p is not None]

    def split_config(self) -> dict:
        return {"test_size": self.test_size if self.files["test"] is None else None, "split_seed": self.split_seed}

    def _read(self, split: str, index: int) -> pd.DataFrame:
        path = self.files[split]
        raw = read_table(path, **self.read_kwargs, key=f"data.{split}_file")
        df, report = clean_frame(raw, path, self.text_column, self.label_column, self.labels)
        df["id"] = index * ID_STRIDE + df["row"]
        self.split_report.setdefault("cleaning", {})[split] = report.as_dict()
        return df

    def load_splits(self) -> dict[str, pd.DataFrame | None]:
        train = self._read("train", 0)
        if self.labels is None:
            self.labels = infer_labels([(self.files["train"], train)])
        self.split_report["label_counts_in_file"] = (
            train["label"].value_counts().reindex(self.labels, fill_value=0).to_dict()
        )
        val = self._read("val", 1) if self.files["val"] is not None else None
        if self.files["test"] is not None:
            test = self._read("test", 2)
        else:
            from sklearn.model_selection import train_test_split

            train, test = train_test_split(
                train, test_size=self.test_size, random_state=self.split_seed, stratify=train["label"]
            )
        return {"train": train, "val": val, "test": test}
