"""Multi-teacher distillation: soft targets from a weighted average of several teachers.

The ensemble's soft targets at temperature T are ``p̄ = Σ_i w_i softmax(z_i / T)`` (weights summing to
1), as in TextBrewer's MultiTeacherDistiller (https://textbrewer.readthedocs.io) and Avram et al.
2022 (multi-teacher distillation of Romanian BERTs). They are handed to the usual soft-target loss as
the logits ``T · log p̄``, whose softmax at T is exactly ``p̄``. A teacher can be a fine-tuned
transformer or ``tfidf_lr`` (char n-gram TF-IDF + logistic regression), whose log-probabilities are
its logits. The weights come from config or are tuned on validation macro-F1 (a grid on the simplex).

Optionally the ensemble's decision rule is tuned for macro-F1 as well: per-class offsets ``b`` added to
``log p̄`` (a prior shift), found on validation by coordinate ascent. Argmax of calibrated probabilities
maximises accuracy, not macro-F1, which rewards recall on the small classes; shifting the per-class
thresholds is the standard fix (Lipton et al. 2014, "Thresholding Classifiers to Maximize F1 Score",
https://arxiv.org/abs/1402.1892; the additive log-prior form is the logit adjustment of Menon et al. 2021,
https://arxiv.org/abs/2007.07314). The soft targets then carry the same shift, softened by the temperature
like the logits (``p̄_T · exp(b / T)``), so the student learns the tuned decision rule.

TF-IDF + LR nearly memorises its own training texts, so its soft targets on the training split are
out-of-fold (k-fold cross-fitting); on other texts it is the model fitted on the whole training split.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch

EPS = 1e-12


def check_weights(weights: Sequence[float], n: int) -> np.ndarray:
    """Weights as an array summing to 1.

    Raises:
        ValueError: a wrong count, a negative weight or an all-zero vector.
    """
    w = np.asarray([float(x) for x in weights], dtype=np.float64)
    if len(w) != n:
        raise ValueError(f"teacher.weights has {len(w)} values for {n} teachers")
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"teacher.weights={w.tolist()}: need non-negative weights with a positive sum")
    return w / w.sum()


def ensemble_probs(logits: Sequence[np.ndarray | torch.Tensor], weights: Sequence[float], temperature: float = 1.0):
    """``Σ_i w_i softmax(z_i / T)``; each ``z_i`` is (N, C); returns (N, C) float64 probabilities."""
    if temperature <= 0:
        raise ValueError(f"temperature={temperature}: must be > 0")
    w = check_weights(weights, len(logits))
    out = None
    for wi, z in zip(w, logits, strict=True):
        z = np.asarray(z, dtype=np.float64) / temperature
        e = np.exp(z - z.max(-1, keepdims=True))
        p = e / e.sum(-1, keepdims=True)
        out = wi * p if out is None else out + wi * p
    return out


def ensemble_log_probs(logits, weights, temperature: float = 1.0, class_bias: Sequence[float] | None = None):
    """``log p̄ + b`` (N, C): the ensemble's log-probabilities at ``temperature`` plus the per-class offsets
    ``class_bias`` (C,) of :func:`tune_class_bias` (none: 0). Its argmax is the ensemble's prediction."""
    z = np.log(np.clip(ensemble_probs(logits, weights, temperature), EPS, 1.0))
    return z if class_bias is None else z + check_class_bias(class_bias, z.shape[1])


def check_class_bias(class_bias: Sequence[float], n_classes: int) -> np.ndarray:
    """The offsets as a (C,) float64 array. Raises ValueError for a count other than ``n_classes``."""
    b = np.asarray(class_bias, dtype=np.float64)
    if b.shape != (n_classes,):
        raise ValueError(f"teacher.class_bias has {b.size} values for {n_classes} classes")
    return b


def ensemble_soft_logits(logits, weights, temperature: float, class_bias: Sequence[float] | None = None) -> np.ndarray:
    """Logits whose softmax at ``temperature`` is the weighted ensemble distribution ``p̄_T``, shifted by
    the per-class offsets: ``T · log p̄_T + b`` (N, C). Softmax at T gives ``p̄_T · exp(b / T)``,
    renormalised: the offsets are in logit units (tuned at T = 1), so the temperature softens them
    as it softens the logits. At T = 1 the soft targets' argmax is the ensemble's prediction."""
    z = temperature * ensemble_log_probs(logits, weights, temperature)
    if class_bias is not None:
        z = z + check_class_bias(class_bias, z.shape[1])
    return z.astype(np.float32)


def tune_weights(logits: Sequence[np.ndarray], labels: Sequence[int], step: float = 0.1) -> tuple[list[float], float]:
    """Grid search on the simplex (``step``) for the weights whose ensemble (T = 1) has the best macro-F1.

    Args:
        logits: each teacher's validation logits (N, C).
        labels: validation class ids (N,).

    Returns:
        ``(weights, macro-F1 in %)``; ties go to the more even weighting found first.
    """
    if not 0 < step <= 1:
        raise ValueError(f"teacher.weight_step={step}: must lie in (0, 1]")
    k = len(logits)
    units = round(1 / step)
    best, best_f1 = None, -1.0
    grid = [c for c in itertools.product(range(units + 1), repeat=k) if sum(c) == units]
    grid.sort(key=lambda c: np.var(c))  # even weightings first
    for combo in grid:
        w = [c / units for c in combo]
        f1 = _macro_f1(labels, ensemble_probs(logits, w).argmax(-1), logits[0].shape[1])
        if f1 > best_f1 + 1e-9:
            best, best_f1 = w, f1
    return best, best_f1


def out_of_fold_logits(
    make_model, texts: Sequence[str], labels: Sequence[int], label_names, folds: int = 5, seed: int = 0
):
    """Logits (N, C) for each training text from a model fitted on the other folds (stratified k-fold).

    Args:
        make_model: ``() -> model`` with ``fit(texts, labels, label_names)`` and ``logits(texts)``.
    """
    from sklearn.model_selection import StratifiedKFold

    texts, labels = list(texts), np.asarray(labels)
    out = np.zeros((len(texts), len(label_names)), dtype=np.float32)
    min_count = np.bincount(labels, minlength=len(label_names)).min()
    k = max(2, min(folds, int(min_count)))
    for train_idx, held_idx in StratifiedKFold(k, shuffle=True, random_state=seed).split(texts, labels):
        model = make_model().fit([texts[i] for i in train_idx], labels[train_idx], label_names)
        out[held_idx] = model.logits([texts[i] for i in held_idx])
    return out


def _macro_f1(labels: np.ndarray, preds: np.ndarray, n_classes: int) -> float:
    from sklearn.metrics import f1_score

    return 100.0 * f1_score(labels, preds, average="macro", labels=list(range(n_classes)), zero_division=0)


def tune_class_bias(
    log_probs: np.ndarray, labels: Sequence[int], step: float = 0.05, limit: float = 1.0, rounds: int = 3
) -> tuple[list[float], float]:
    """Per-class offsets ``b`` (C,) that maximise the macro-F1 of ``argmax(log_probs + b)`` on validation.

    Coordinate ascent: each class's offset in turn takes the best value of the grid ``[-limit, limit]``
    (``step``), the others fixed, for ``rounds`` passes. Offsets are centred (mean 0); a shift common to
    all classes changes nothing. Sources: Lipton et al. 2014 (https://arxiv.org/abs/1402.1892), Menon et
    al. 2021 (https://arxiv.org/abs/2007.07314).

    Args:
        log_probs: validation log-probabilities or logits (N, C).
        labels: validation class ids (N,).

    Returns:
        ``(offsets (C,), validation macro-F1 in %)``; the offsets stay 0 unless a change raises macro-F1.

    Raises:
        ValueError: ``step`` or ``limit`` not positive, ``rounds`` < 1, or shapes that do not match.
    """
    z = np.asarray(log_probs, dtype=np.float64)
    y = np.asarray(labels)
    if z.ndim != 2 or len(z) != len(y):
        raise ValueError(f"tune_class_bias: log_probs {z.shape} and labels ({len(y)},) do not match")
    if step <= 0 or limit <= 0 or rounds < 1:
        raise ValueError(
            f"class bias grid: step={step}, limit={limit}, rounds={rounds}; need step, limit > 0, rounds >= 1"
        )
    c = z.shape[1]
    grid = np.round(np.arange(-limit, limit + step / 2, step), 6)
    grid = grid[np.argsort(np.abs(grid), kind="stable")]  # ties go to the smaller offset
    b = np.zeros(c)
    best = _macro_f1(y, z.argmax(-1), c)
    for _ in range(rounds):
        changed = False
        for k in range(c):
            for g in grid:
                trial = b.copy()
                trial[k] = g
                f1 = _macro_f1(y, (z + trial).argmax(-1), c)
                if f1 > best + 1e-9:
                    b, best, changed = trial, f1, True
        if not changed:
            break
    return (b - b.mean()).tolist(), best
