"""``DistillStudent``: train any student ``nn.Module`` (batch -> logits) from the teacher's soft targets."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from bertcompress.distill.losses import SoftTargetLoss
from bertcompress.models.classifier import ClassifierModule


class DistillStudent(ClassifierModule):
    """Knowledge distillation of a teacher into ``student`` (Hinton et al. 2015).

    Args:
        student: maps a batch dict to logits (B, C), or (B, T, C) for sequence labeling (per-token KD).
        label_names: class names in id order.
        loss: the :class:`SoftTargetLoss` (mode, temperature, alpha).
        kd: False trains the same student on hard labels only (the no-KD ablation).
        optimizer / warmup_ratio: as in :class:`ClassifierModule`.

    Each training batch must carry ``teacher_logits`` (B, C) when ``kd`` (the
    :class:`~bertcompress.distill.soft_targets.SoftTargetCallback` puts them there). Logged:
    ``train/loss``, ``train/loss_kd``, ``train/loss_ce``.
    """

    def __init__(
        self,
        student: nn.Module,
        label_names: Sequence[str],
        loss: SoftTargetLoss | None = None,
        kd: bool = True,
        optimizer: Callable | None = None,
        warmup_ratio: float = 0.1,
    ):
        super().__init__(label_names, optimizer, warmup_ratio)
        self.student = student
        self.loss_fn = loss or SoftTargetLoss()
        self.kd = kd

    def forward(self, batch: dict) -> torch.Tensor:
        return self.student(batch)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self(batch)
        teacher_logits = batch.get("teacher_logits") if self.kd else None
        if self.kd and teacher_logits is None:
            raise RuntimeError("kd=True but the batch has no teacher_logits: add a SoftTargetCallback to the Trainer")
        total, kd, ce = self.loss_fn(logits, teacher_logits, batch.get("labels"), batch.get("teacher_mask"))
        n = len(logits)
        self.log("train/loss", total, prog_bar=True, batch_size=n)
        self.log("train/loss_kd", kd, batch_size=n)
        self.log("train/loss_ce", ce, batch_size=n)
        return total
