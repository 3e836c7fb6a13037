"""Tokenized examples for one model: the text encoder, the dataset of encoded examples, the padding
collator and the per-epoch shuffling sampler of the training loader."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset


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
        return iter(self.order())

    def order(self) -> list[int]:
        """This epoch's permutation of ``range(n)``."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.n, generator=g).tolist()


class DistributedEpochShuffleSampler(torch.utils.data.DistributedSampler):
    """:class:`EpochShuffleSampler`'s order split over ``num_replicas`` DDP ranks as ``DistributedSampler``
    splits it (rank r takes positions r, r + R, r + 2R, ...; the order is padded with its first indices to a
    multiple of R). With a per-rank batch of b, step k's global batch is then positions [kbR, (k+1)bR) of
    the one-process order: a DDP fit of batch b on R ranks sees the batches of a one-process fit of batch
    bR. Lightning leaves a ``DistributedSampler`` as it is, and calls :meth:`set_epoch` before each epoch."""

    def __init__(self, n: int, seed: int, num_replicas: int, rank: int):
        # DistributedSampler's fields, without its dataset (only its length is needed)
        self.inner = EpochShuffleSampler(n, seed)
        self.num_replicas, self.rank, self.epoch, self.seed = int(num_replicas), int(rank), 0, int(seed)
        self.shuffle, self.drop_last = True, False
        self.num_samples = -(-n // self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.inner.set_epoch(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        order = self.inner.order()
        order += order[: self.total_size - len(order)]
        return iter(order[self.rank : self.total_size : self.num_replicas])
