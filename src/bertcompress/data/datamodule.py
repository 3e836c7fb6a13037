"""The LightningDataModule base for text classification (the corpora are in :mod:`bertcompress.data.corpora`).

Every example keeps a stable integer ``id`` (derived from its file and row) so that later
stages (teacher-logit caches, distillation) align examples by id, never by batch position.
The raw texts are kept; each model tokenizes them itself through a :class:`TextEncoder`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import pandas as pd
import torch
from torch.utils.data import DataLoader

from bertcompress.data.encoding import (
    DistributedEpochShuffleSampler,
    EpochShuffleSampler,
    PadCollator,
    TextEncoder,
)
from bertcompress.data.readers import DataError, infer_labels
from bertcompress.data.splits import carve_validation, stratified_head
from bertcompress.utils.io import file_sha256

log = logging.getLogger(__name__)

UBMEC_LABELS = ("anger", "disgust", "fear", "joy", "sadness", "surprise")
UBMEC_UPSTREAM = "https://github.com/Sakibsourav019/UBMEC-Unified-Bangla-Multi-class-Emotion-Corpus-"
SPLITS = ("train", "val", "test")
# ids of examples from the n-th file of a multi-file corpus are n * ID_STRIDE + row
ID_STRIDE = 10_000_000


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
        eval_sets: ``{name: {path, text_column, label_column, label_map, limit}}``: out-of-domain labelled
            corpora that the evaluation stage scores through their label maps; never trained on.
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
        eval_sets: dict | None = None,
    ):
        super().__init__()
        self.name = name
        # extra labelled corpora scored beside the test split, never trained on (stages/eval_sets.py)
        self.eval_sets = dict(eval_sets or {})
        self.labels = list(labels) if labels is not None else None
        self.max_length = max_length
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.val_size = val_size
        self.seed = seed
        self.shuffle_seed = seed  # the training loader's order: a view can give a stage its own (student.seed)
        self.limits = {"train": limit_train, "val": limit_val, "test": limit_test}
        self.num_workers = num_workers
        self.frames: dict[str, pd.DataFrame] | None = None
        self.split_report: dict = {}
        self.encoder: TextEncoder | None = None
        self._encoded: dict[tuple, object] = {}
        # where tokenized splits are cached by content (the pipeline sets ${paths.cache_dir}/tokens); None: memory
        self.token_cache_dir: Path | None = None
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
        absent = [lab for lab in self.labels if lab not in set(frames["train"]["label"])]
        if absent:
            raise DataError(
                f"{self.name}: data.labels lists {absent}, which no training text has (labels in the training data: "
                f"{sorted(set(frames['train']['label']))}); drop them from data.labels or add texts with them."
            )
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

    def view(
        self,
        encoder: TextEncoder | None = None,
        max_length: int | None = None,
        transfer: tuple[Sequence[int], Sequence[str]] | None = None,
        shuffle_seed: int | None = None,
    ) -> ClassificationDataModule:
        """A view of this datamodule for one stage: the same splits, with the ``encoder`` its loaders
        tokenize with, the ``max_length`` its encoders truncate at, an augmented ``transfer`` set (ids,
        texts) joined to the training loader, and the ``shuffle_seed`` of the training loader's order (the
        splits and the fingerprint keep the data seed). The datamodule itself is never changed, so nothing a
        stage does changes what a later stage sees.

        Transfer-set examples carry no hard label; they need teacher soft targets (a SoftTargetCallback
        that knows their ids).

        Raises:
            ValueError: transfer ids that collide with corpus ids, or ids and texts of different lengths.
        """
        self.setup()
        out = copy.copy(self)  # shares the splits and the tokenization memo
        out.encoder = encoder if encoder is not None else self.encoder
        out.max_length = int(max_length) if max_length is not None else self.max_length
        out.shuffle_seed = int(shuffle_seed) if shuffle_seed is not None else self.shuffle_seed
        if transfer is not None:
            ids, texts = list(transfer[0]), list(transfer[1])
            if len(ids) != len(texts):
                raise ValueError(f"transfer set: {len(ids)} ids but {len(texts)} texts")
            clash = set(ids) & {i for s in SPLITS for i in self.ids(s)}
            if clash:
                raise ValueError(f"transfer-set ids {sorted(clash)[:5]} collide with corpus example ids")
            out.transfer = (ids, texts) if ids else None
        return out

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

    def dataset(self, split: str, encoder: TextEncoder | None = None):
        """Tokenize ``split`` with ``encoder`` (default: the one set), memoised per encoder: a
        ``datasets.Dataset`` of ``id``, ``input_ids``, ``labels`` rows (``Dataset.map(batched=True)``), kept in
        :attr:`token_cache_dir` by content when set (memory-mapped, tokenized once across runs)."""
        self.setup()
        encoder = encoder or self.encoder
        if encoder is None:
            raise RuntimeError("No TextEncoder set: pass one, or use datamodule.view(encoder)")
        key = (id(encoder), split, id(self.transfer) if split == "transfer" else None)
        if key not in self._encoded:
            from bertcompress.data.hf_io import encode_dataset

            self._encoded[key] = encode_dataset(
                self.ids(split), self.texts(split), self.label_ids(split), encoder, self.token_cache_dir
            )
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
            sampler=self._train_sampler(len(ds)) if shuffle else None,
            collate_fn=self.collator(encoder),
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def _train_sampler(self, n: int) -> torch.utils.data.Sampler:
        """The per-epoch order; under DDP (a trainer with several processes) this rank's share of it."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.world_size > 1:
            return DistributedEpochShuffleSampler(n, self.shuffle_seed, trainer.world_size, trainer.global_rank)
        return EpochShuffleSampler(n, self.shuffle_seed)

    def train_dataloader(self) -> DataLoader:
        if not self.transfer:
            return self.loader("train", shuffle=True)
        parts = [self.dataset("train"), self.dataset("transfer")]  # the transfer set joins training only
        return self._loader(torch.utils.data.ConcatDataset(parts), self.encoder, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")
