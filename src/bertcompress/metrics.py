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
