"""Classification metrics for results.json (scikit-learn), shared by every model kind."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], label_names: Sequence[str]) -> dict:
    """Accuracy, macro-F1 (in %), per-class precision/recall/F1/support and the confusion matrix.

    Args:
        y_true, y_pred: class ids, shape (N,).
        label_names: names in class-id order.

    Returns:
        ``{"accuracy", "macro_f1", "weighted_f1", "per_class": {name: {...}}, "confusion_matrix": [[...]]}``;
        accuracy and F1 are percentages (0-100), the confusion matrix has true classes as rows.
    """
    labels = list(range(len(label_names)))
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "n": int(len(y_true)),
        "accuracy": 100.0 * float(accuracy_score(y_true, y_pred)),
        "macro_f1": 100.0 * float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": 100.0 * float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "per_class": {
            name: {
                "precision": 100.0 * float(p[i]),
                "recall": 100.0 * float(r[i]),
                "f1": 100.0 * float(f[i]),
                "support": int(s[i]),
            }
            for i, name in enumerate(label_names)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def ner_metrics(y_true: Sequence[Sequence[int]], y_pred: Sequence[Sequence[int]], label_names: Sequence[str]) -> dict:
    """Entity-level precision, recall and F1 (seqeval, CoNLL evaluation: an entity counts only when its
    type and both boundaries match; Nakayama 2018, https://github.com/chakki-works/seqeval), micro and
    per type, plus token accuracy. All in %.

    Args:
        y_true, y_pred: per sentence, a tag id per word (same lengths).
        label_names: BIO tag names in id order.

    Returns:
        ``{"n", "tokens", "precision", "recall", "f1", "macro_f1", "accuracy", "per_type": {TYPE: {...}}}``:
        ``f1`` is the micro entity F1 (the CoNLL figure), ``macro_f1`` its mean over entity types and
        ``accuracy`` the token accuracy.

    Raises:
        ValueError: when a sentence's predicted and true lengths differ.
    """
    from seqeval.metrics import accuracy_score as seq_accuracy
    from seqeval.metrics import classification_report

    names = list(label_names)
    true_tags, pred_tags = [], []
    for i, (t, p) in enumerate(zip(y_true, y_pred, strict=True)):
        if len(t) != len(p):
            raise ValueError(f"sentence {i}: {len(t)} true tags but {len(p)} predicted")
        true_tags.append([names[x] for x in t])
        pred_tags.append([names[x] for x in p])
    report = classification_report(true_tags, pred_tags, output_dict=True, zero_division=0, mode=None)
    types = sorted(k for k in report if k not in {"micro avg", "macro avg", "weighted avg"})
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0})
    return {
        "n": len(true_tags),
        "tokens": int(sum(len(t) for t in true_tags)),
        "precision": 100.0 * float(micro["precision"]),
        "recall": 100.0 * float(micro["recall"]),
        "f1": 100.0 * float(micro["f1-score"]),
        "macro_f1": 100.0 * float(np.mean([report[k]["f1-score"] for k in types])) if types else 0.0,
        "accuracy": 100.0 * float(seq_accuracy(true_tags, pred_tags)) if true_tags else 0.0,
        "per_type": {
            k: {
                "precision": 100.0 * float(report[k]["precision"]),
                "recall": 100.0 * float(report[k]["recall"]),
                "f1": 100.0 * float(report[k]["f1-score"]),
                "support": int(report[k]["support"]),
            }
            for k in types
        },
    }


def task_metrics(task: str, y_true, y_pred, label_names: Sequence[str]) -> dict:
    """:func:`classification_metrics` or, for ``task == "ner"``, :func:`ner_metrics`."""
    return (ner_metrics if task == "ner" else classification_metrics)(y_true, y_pred, label_names)


def headline_metric(task: str) -> str:
    """The figure a task is judged by in results and retention: ``macro_f1`` (classification) or the
    micro entity ``f1`` (ner, the CoNLL-2003 figure)."""
    return "f1" if task == "ner" else "macro_f1"


# every accuracy, F1, precision and recall in results.json, cache metas, CSV logs, W&B and the report is a
# percentage (0-100); retention and sparsity stay fractions. results.json and cache metas say so here:
METRIC_UNIT = "percent"
# the figures that files written before METRIC_UNIT existed hold as fractions in [0, 1]
FRACTION_KEYS = ("best_val_macro_f1",)


def percent_block(block: dict | None) -> dict | None:
    """``block`` (a teacher/student results block or cache meta) with :data:`FRACTION_KEYS` in percent: a
    block without ``metric_unit: percent`` was written when they were fractions, and is converted (x100)."""
    if not block or block.get("metric_unit") == METRIC_UNIT:
        return block
    out = dict(block)
    for k in FRACTION_KEYS:
        if isinstance(out.get(k), int | float):
            out[k] = 100.0 * float(out[k])
    out["metric_unit"] = METRIC_UNIT
    return out
