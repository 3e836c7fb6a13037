"""Soft-target distillation losses.

- ``kl``: Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network"
  (arXiv:1503.02531): ``alpha * T^2 * KL(softmax(z_t/T) || softmax(z_s/T)) + (1 - alpha) * CE(z_s, y)``.
  The ``T^2`` factor keeps the soft-target gradients on the scale of the hard-label ones.
- ``mse``: mean squared error between raw logits, as in Ba & Caruana 2014 and the BiLSTM/CNN
  students of Nityasya et al. 2022 / Tang et al. 2019: ``alpha * MSE(z_s, z_t) + (1 - alpha) * CE``.
- ``alpha = 1`` is the pure soft mode (no hard labels at all).

Examples without a hard label (augmented transfer sets) pass ``labels == -100``: the CE term
skips them and averages over the labelled ones only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

IGNORE_INDEX = -100


@dataclass(frozen=True)
class SoftTargetLoss:
    """Configured soft-target loss. Call with logits to get ``(total, kd, ce)``.

    Args:
        mode: ``kl`` or ``mse``.
        temperature: T > 0, softens both distributions in ``kl`` mode (unused by ``mse``).
        alpha: weight of the soft-target term in [0, 1]; ``1 - alpha`` goes to hard-label CE.

    Raises:
        ValueError: for an unknown mode, ``temperature <= 0`` or ``alpha`` outside [0, 1].
    """

    mode: str = "kl"
    temperature: float = 2.0
    alpha: float = 0.5

    def __post_init__(self):
        if self.mode not in {"kl", "mse"}:
            raise ValueError(f"student.loss.mode={self.mode!r}: expected 'kl' or 'mse'")
        if not self.temperature > 0:
            raise ValueError(f"student.loss.temperature={self.temperature}: the temperature T must be > 0")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"student.loss.alpha={self.alpha}: alpha must lie in [0, 1]")

    @property
    def target_temperature(self) -> float:
        """The temperature the teacher's soft targets are made at: T for ``kl``, 1 for ``mse`` (raw logits)."""
        return self.temperature if self.mode == "kl" else 1.0

    def describe(self) -> dict:
        """``{"mode", "temperature", "alpha"}`` for results.json."""
        return {"mode": self.mode, "temperature": self.temperature, "alpha": self.alpha}

    def soft_term(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """The soft-target term, averaged over the batch. Logits: (N, C) -> scalar."""
        if self.mode == "mse":
            return F.mse_loss(student_logits, teacher_logits)
        t = self.temperature
        log_p_s = F.log_softmax(student_logits / t, dim=-1)
        log_p_t = F.log_softmax(teacher_logits / t, dim=-1)
        return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * t * t

    def __call__(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor | None,
        labels: torch.Tensor | None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Combine the two terms.

        Args:
            student_logits: (N, C), or (B, T, C) for sequence labeling (per-token KD).
            teacher_logits: like ``student_logits``, or None when training without KD (then the loss is CE only).
            labels: (N,) class ids, ``-100`` for examples with no hard label; None for none at all.
                Per token: (B, T), ``-100`` off the first subwords; both terms then average over the
                other tokens only.
            mask: per token only, (B, T) bool: the tokens that have teacher logits (default: labels != -100).

        Returns:
            ``(total, kd, ce)`` scalars; a term that does not apply is 0.
        """
        if student_logits.dim() == 3:
            if labels is None:
                raise ValueError("per-token KD needs the token labels (B, T) to know which tokens count")
            keep = labels != IGNORE_INDEX
            kd_keep = keep if mask is None else keep & mask.bool()
            ce = _masked_ce(student_logits[keep], labels[keep])
            if teacher_logits is None:
                return ce, student_logits.new_zeros(()), ce
            if not bool(kd_keep.any()):
                kd = student_logits.new_zeros(())
            else:
                kd = self.soft_term(student_logits[kd_keep], teacher_logits[kd_keep].to(student_logits.dtype))
            ce = ce if self.alpha < 1.0 else student_logits.new_zeros(())
            return self.alpha * kd + (1.0 - self.alpha) * ce, kd, ce
        zero = student_logits.new_zeros(())
        if teacher_logits is None:
            ce = _masked_ce(student_logits, labels)
            return ce, zero, ce
        kd = self.soft_term(student_logits, teacher_logits.to(student_logits.dtype))
        ce = _masked_ce(student_logits, labels) if self.alpha < 1.0 else zero
        return self.alpha * kd + (1.0 - self.alpha) * ce, kd, ce


def _masked_ce(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    if labels is None or not bool((labels != IGNORE_INDEX).any()):
        return logits.new_zeros(())
    return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)


def loss_from_config(node) -> SoftTargetLoss:
    """The KD loss of a ``student.loss`` config node: its ``_target_`` class (default :class:`SoftTargetLoss`)
    called with the other keys. The class's own checks raise as they are (no instantiation wrapper), so a
    bad T or alpha fails with the message that names the key.

    Raises:
        ValueError: for an unknown mode, ``temperature <= 0`` or ``alpha`` outside [0, 1].
    """
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    kwargs = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
    target = kwargs.pop("_target_", None)
    kwargs.pop("terms", None)  # the intermediate-layer terms (bertcompress.distill.features)
    kwargs.pop("intermediate_epochs", None)  # their stage before the logit term (stages.student)
    cls = get_class(target) if target else SoftTargetLoss
    return cls(**kwargs)


def intermediate_epochs(node) -> int:
    """``intermediate_epochs`` of a ``student.loss`` node: epochs of the intermediate-layer terms alone before
    the logit term (TinyBERT's two-stage task distillation, Jiao et al. 2020, arXiv:1909.10351, §3.3);
    0 or unset: the terms and the logit term learned jointly.

    Raises:
        ValueError: a value that is no integer >= 0, or one without ``terms`` to learn (naming the key).
    """
    epochs = node.get("intermediate_epochs") or 0
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"student.loss.intermediate_epochs={epochs!r}: must be an integer >= 0")
    if epochs and not node.get("terms"):
        raise ValueError(
            f"student.loss.intermediate_epochs={epochs} needs intermediate terms to learn: set student.loss.terms "
            "(e.g. experiment=tinybert_4l) or leave it unset"
        )
    return epochs
