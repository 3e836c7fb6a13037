"""The teacher ensemble (after TextBrewer's MultiTeacherDistiller; Avram et al. 2022): member logits
combined with weights tuned on validation macro-F1 and optional per-class offsets, the soft targets
``T·log p̄`` it hands to the student, and its test metrics. The members are fitted by the teacher
stage (:mod:`bertcompress.stages.ensemble`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import DictConfig

from bertcompress.distill.multi_teacher import (
    check_weights,
    ensemble_log_probs,
    ensemble_soft_logits,
    tune_class_bias,
    tune_weights,
)
from bertcompress.metrics import classification_metrics

log = logging.getLogger(__name__)


@dataclass
class TeacherEnsemble:
    """Several teachers whose weighted, temperature-scaled probabilities are the soft targets
    (:mod:`bertcompress.distill.multi_teacher`). Member 0 is the primary (fine-tuned) teacher."""

    names: list[str]
    weights: list[float]
    logits: list[dict]  # per teacher: {example id: logits (C,) numpy} on train, val, test
    member_text_logits: list  # per member after the primary: texts -> (N, C) logits, for transfer-set texts
    val_macro_f1: float | None
    test: dict
    members_test: dict
    tfidf_reports: dict
    class_bias: list[float] | None = None  # per-class offsets on log p̄ (C,), tuned on val for macro-F1
    class_bias_val_macro_f1: float | None = None

    def stacked(self, ids) -> list[np.ndarray]:
        return [np.stack([np.asarray(m[i]) for i in ids]) for m in self.logits]

    def soft_logits_by_id(
        self, ids, temperature: float, transfer: tuple[list, list] | None = None, primary_transfer=None
    ) -> dict:
        """``{id: T·log p̄ (C,)}`` for ``ids`` and, given ``transfer`` (ids, texts), for the transfer set;
        ``primary_transfer`` is then the primary teacher's (cached) logits on those texts, (N, C)."""
        z = ensemble_soft_logits(self.stacked(ids), self.weights, temperature, self.class_bias)
        out = dict(zip(ids, torch.from_numpy(z), strict=True))
        if transfer and transfer[0]:
            parts = [primary_transfer, *(f(transfer[1]) for f in self.member_text_logits)]
            zt = ensemble_soft_logits(parts, self.weights, temperature, self.class_bias)
            out.update(zip(transfer[0], torch.from_numpy(zt), strict=True))
        return out


def ensemble_class_bias(
    teacher_cfg: DictConfig, val_logits: list, weights, val_labels: list[int], labels: list[str]
) -> tuple[list[float] | None, float | None]:
    """``teacher_cfg.class_bias``: null (none), ``tune`` (:func:`tune_class_bias` on the weighted
    ensemble's validation log-probabilities) or C floats; returns ``(offsets or None, tuned val macro-F1)``.

    Raises:
        ValueError: another string, or a list whose length is not the number of classes.
    """
    spec = teacher_cfg.get("class_bias")
    if spec is None:
        return None, None
    if spec == "tune":
        z = ensemble_log_probs(val_logits, weights)
        return tune_class_bias(z, val_labels, float(teacher_cfg.get("class_bias_step", 0.05)))
    if isinstance(spec, str):
        raise ValueError(f"teacher.class_bias={spec!r}: expected null, 'tune' or {len(labels)} floats")
    bias = [float(x) for x in spec]
    if len(bias) != len(labels):
        raise ValueError(f"teacher.class_bias has {len(bias)} values for the {len(labels)} classes {list(labels)}")
    return bias, None


def combine_teachers(
    teacher_cfg: DictConfig,
    names: list[str],
    logits: list[dict],
    text_logits: list,
    reports: dict,
    dm,
) -> TeacherEnsemble:
    """The ensemble of teachers ``names`` with logits ``{id: (C,)}`` on train/val/test: weights from
    ``teacher_cfg.weights`` or tuned on validation macro-F1 (:func:`tune_weights`), optional per-class
    offsets (:func:`ensemble_class_bias`), and the ensemble's and each member's test metrics.

    Raises:
        ValueError: weights that do not match the members, or a bad class_bias.
    """
    val_ids, test_ids = dm.ids("val"), dm.ids("test")
    weights = teacher_cfg.get("weights", "tune")
    val_logits = [np.stack([m[i] for i in val_ids]) for m in logits]
    val_f1 = None
    if weights == "tune":
        weights, val_f1 = tune_weights(val_logits, dm.label_ids("val"), float(teacher_cfg.get("weight_step", 0.1)))
    weights = check_weights(list(weights), len(names)).tolist()
    bias, bias_val_f1 = ensemble_class_bias(teacher_cfg, val_logits, weights, dm.label_ids("val"), list(dm.labels))
    test_logits = [np.stack([m[i] for i in test_ids]) for m in logits]
    y = dm.label_ids("test")
    preds = ensemble_log_probs(test_logits, weights, class_bias=bias).argmax(-1).tolist()
    test = classification_metrics(y, preds, dm.labels)
    members_test = {
        n: classification_metrics(y, z.argmax(-1).tolist(), dm.labels) for n, z in zip(names, test_logits, strict=True)
    }
    log.info(
        "Teacher ensemble %s, weights %s, class bias %s: test macro-F1 %.2f", names, weights, bias, test["macro_f1"]
    )
    return TeacherEnsemble(names, weights, logits, text_logits, val_f1, test, members_test, reports, bias, bias_val_f1)
