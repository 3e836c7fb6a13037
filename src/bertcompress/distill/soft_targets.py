"""Teacher soft targets: an on-disk cache of the teacher's logits keyed by example id, and the
callback that hands them to the student batch by batch.

Black-box KD (the default, as in Rahman et al. 2025): the fine-tuned teacher's logits on train and
val are computed once and saved; every student and sweep job reuses them. Logits are looked up by
example id, so shuffling, a different tokenizer or a different batch size cannot misalign them.
``online`` mode runs the teacher inside the training loop instead (needed once the transfer set is
augmented on the fly).
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from torch import nn

from bertcompress.data.datamodule import ClassificationDataModule
from bertcompress.data.encoding import PadCollator, TextEncoder
from bertcompress.utils.cache import cache_path, load_or_build
from bertcompress.utils.io import file_sha256, stable_hash

log = logging.getLogger(__name__)
LOGITS_FILE = "logits.pt"


def teacher_fingerprint(teacher_dir: str | Path) -> str:
    """sha256 of the teacher's weight files: a changed checkpoint gives a new fingerprint."""
    files = sorted(Path(teacher_dir).glob("*.safetensors")) + sorted(Path(teacher_dir).glob("*.bin"))
    if not files:
        raise FileNotFoundError(f"No weight files (*.safetensors, *.bin) in the teacher dir {teacher_dir}")
    return stable_hash({f.name: file_sha256(f) for f in files}, length=16)


@torch.no_grad()
def predict_logits(
    model: nn.Module, dataset, tokenizer, batch_size: int = 64, description: str = "teacher logits", collate=None
) -> tuple[torch.Tensor, torch.Tensor | list[torch.Tensor]]:
    """Run ``model`` (batch -> logits) over ``dataset`` with a progress bar.

    Returns:
        ``(ids (N,) int64, logits (N, C) float32)`` in dataset order. Sequence labeling (logits
        (B, T, C)): ``logits`` is a list of N ``(n_i, C)`` tensors, the rows of the first subwords
        (labels != -100), one per word the model saw.
    """
    from rich.progress import track

    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate or PadCollator(tokenizer))
    was_training = model.training
    model.eval()
    ids, logits, per_token = [], [], False
    device = next(model.parameters()).device
    for batch in track(loader, description=description, total=len(loader), transient=True):
        batch = {k: v.to(device) for k, v in batch.items()}
        z = model(batch).float().cpu()
        if z.dim() == 3:
            per_token = True
            labels = batch["labels"].cpu()
            logits.extend(row[lab != -100] for row, lab in zip(z, labels, strict=True))
        else:
            logits.append(z)
        ids.append(batch["id"].cpu())
    model.train(was_training)
    return torch.cat(ids), (logits if per_token else torch.cat(logits))


class TeacherLogitCache:
    """Teacher logits for the train and val splits, computed once and kept on disk.

    Key: the teacher's weight fingerprint, the data fingerprint, the teacher encoder's max_length
    and normalizer, the splits (``transfer``: an augmented transfer set, whose hash is ``extra_key``). Entry:
    ``<cache_dir>/logits/<teacher name>-<key>/logits.pt`` holding ``ids``, ``logits`` (and ``lengths`` per token).
    """

    def __init__(
        self,
        cache_dir: str | Path,
        teacher_name: str,
        teacher_dir: str | Path,
        dm: ClassificationDataModule,
        encoder: TextEncoder,
        splits=("train", "val"),
        extra_key: dict | None = None,
    ):
        self.dm, self.encoder, self.splits = dm, encoder, tuple(splits)
        self.teacher_dir = Path(teacher_dir)
        normalizer = getattr(encoder.normalizer, "__module__", None) if encoder.normalizer else None
        self.key = {
            "teacher": teacher_fingerprint(teacher_dir),
            "data": dm.fingerprint(),
            "max_length": encoder.max_length,
            "normalizer": normalizer,
            "splits": self.splits,
        }
        if extra_key:  # e.g. the content hash of an augmented transfer set
            self.key["extra"] = extra_key
        self.cache_dir, self.teacher_name = Path(cache_dir), teacher_name
        self.path = cache_path(cache_dir, "logits", teacher_name, self.key) / LOGITS_FILE
        self.hit = False

    def load_or_compute(self, teacher: nn.Module, batch_size: int = 64) -> dict[int, torch.Tensor]:
        """Return ``{example id: logits (C,)}`` for the cached splits (the ``logits`` entry of
        :func:`bertcompress.utils.cache.load_or_build`), computing and saving them on a miss.

        Raises:
            ValueError: when the logits have a different number of classes than the data's labels.
        """

        def build(tmp: Path) -> dict:
            parts = [
                predict_logits(
                    teacher, self.dm.dataset(split, self.encoder), self.encoder.tokenizer, batch_size,
                    f"teacher logits ({split})", collate=self.dm.collator(self.encoder),
                )
                for split in self.splits
            ]  # fmt: skip
            ids = torch.cat([p[0] for p in parts])
            if isinstance(parts[0][1], list):  # per token: rows concatenated, with each example's length
                rows = [z for p in parts for z in p[1]]
                logits, lengths = torch.cat(rows), torch.tensor([len(z) for z in rows])
            else:
                logits, lengths = torch.cat([p[1] for p in parts]), None
            torch.save({"ids": ids, "logits": logits, "lengths": lengths}, tmp / LOGITS_FILE)
            return {"examples": len(ids)}

        def load(path: Path) -> dict:
            return torch.load(path / LOGITS_FILE, map_location="cpu", weights_only=True)

        blob, use = load_or_build(self.cache_dir, "logits", self.teacher_name, self.key, build, load)
        self.hit = use.cache_hit
        ids, logits, lengths = blob["ids"], blob["logits"], blob.get("lengths")
        if logits.shape[1] != len(self.dm.labels):
            raise ValueError(
                f"Teacher logits have {logits.shape[1]} classes but the data has {len(self.dm.labels)} labels "
                f"{self.dm.labels}: the teacher was trained on another label set."
            )
        if lengths is not None:  # {id: (n_words, C)}
            return dict(zip(ids.tolist(), torch.split(logits, lengths.tolist()), strict=True))
        return dict(zip(ids.tolist(), logits, strict=True))


def scatter_token_targets(rows: list[torch.Tensor], labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Place per-word teacher logits at the first-subword positions of a batch.

    Args:
        rows: B tensors (n_i, C): the teacher's logits per word (see :func:`predict_logits`).
        labels: (B, T) token labels, ``-100`` off the first subwords.

    Returns:
        ``(teacher_logits (B, T, C), mask (B, T) bool)``: the mask marks the positions that got teacher
        logits. When the student's tokenizer or max_length keeps fewer or more words than the teacher's,
        the first min(n) words are matched and the rest stay out of the KD term.
    """
    b, t = labels.shape
    c = rows[0].shape[-1] if rows else 0
    out = torch.zeros(b, t, c)
    mask = torch.zeros(b, t, dtype=torch.bool)
    for i, z in enumerate(rows):
        pos = (labels[i] != -100).nonzero().flatten()
        n = min(len(pos), len(z))
        out[i, pos[:n]] = z[:n].float()
        mask[i, pos[:n]] = True
    return out, mask


class SoftTargetCallback(L.Callback):
    """Puts the teacher's logits into each training batch as ``batch["teacher_logits"]`` (B, C).

    Args:
        logits_by_id: black-box mode: ``{example id: logits (C,)}`` from :class:`TeacherLogitCache`.
        teacher: online mode: the teacher module (batch -> logits), run without gradients.
        teacher_encoder / texts_by_id: online mode: how the teacher tokenizes each example's text.

    Raises:
        KeyError: when a batch holds an id with no teacher logits (names the first missing ids).
    """

    def __init__(
        self,
        logits_by_id: dict[int, torch.Tensor] | None = None,
        teacher: nn.Module | None = None,
        teacher_encoder: TextEncoder | None = None,
        texts_by_id: dict[int, str] | None = None,
    ):
        if (logits_by_id is None) == (teacher is None):
            raise ValueError("SoftTargetCallback needs exactly one of logits_by_id (black-box) or teacher (online)")
        if teacher is not None and (teacher_encoder is None or texts_by_id is None):
            raise ValueError("online soft targets need the teacher's encoder and the texts by id")
        self.logits_by_id = logits_by_id
        self.teacher, self.teacher_encoder, self.texts_by_id = teacher, teacher_encoder, texts_by_id
        self._collate = PadCollator(teacher_encoder.tokenizer) if teacher_encoder is not None else None

    def soft_targets(self, ids: list[int], device) -> torch.Tensor:
        if self.logits_by_id is not None:
            missing = [i for i in ids if i not in self.logits_by_id]
            if missing:
                raise KeyError(f"No cached teacher logits for example ids {missing[:5]} (of {len(missing)} missing)")
            return torch.stack([self.logits_by_id[i] for i in ids]).to(device)
        texts = [self.texts_by_id[i] for i in ids]
        encoded = self.teacher_encoder(texts)
        batch = self._collate([{"input_ids": x} for x in encoded])
        self.teacher.to(device).eval()
        with torch.no_grad():
            return self.teacher({k: v.to(device) for k, v in batch.items()}).float()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        ids = batch["id"].tolist()
        if self.logits_by_id is not None and ids and self.logits_by_id.get(ids[0], torch.zeros(1)).dim() == 2:
            missing = [i for i in ids if i not in self.logits_by_id]
            if missing:
                raise KeyError(f"No cached teacher logits for example ids {missing[:5]} (of {len(missing)} missing)")
            z, mask = scatter_token_targets([self.logits_by_id[i] for i in ids], batch["labels"].cpu())
            device = batch["input_ids"].device
            batch["teacher_logits"], batch["teacher_mask"] = z.to(device), mask.to(device)
            return
        batch["teacher_logits"] = self.soft_targets(ids, batch["input_ids"].device)


class InputTeacherCallback(L.Callback):
    """Puts ``teacher``'s logits on each training batch's own inputs into ``batch["teacher_logits"]`` (B, C),
    or (B, T, C) with ``teacher_mask`` (B, T) for sequence labeling: for a compressed model distilled from its
    uncompressed self (QAT, pruning recovery), which reads the same tokens. ``teacher``: batch -> logits, run
    without gradients and never trained."""

    def __init__(self, teacher: nn.Module):
        self.teacher = teacher.eval().requires_grad_(False)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.teacher.to(batch["input_ids"].device).eval()
        with torch.no_grad():
            z = self.teacher({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}).float()
        batch["teacher_logits"] = z
        if z.dim() == 3 and "labels" in batch:
            batch["teacher_mask"] = batch["labels"] != -100
