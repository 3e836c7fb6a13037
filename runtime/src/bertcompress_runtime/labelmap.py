"""Cross-corpus evaluation: map a corpus' labels onto an artifact's, many-to-one in either direction.

A label map is a YAML or JSON object ``{data label: artifact label | [artifact labels] | null}``:
- several data labels may name one artifact label (they merge into one class);
- a data label may name several artifact labels: that class is scored by the sum of their probabilities
  (a corpus with one ``Anger/Disgust`` class: ``{"Anger/Disgust": [anger, disgust]}``);
- ``null`` drops that data label's rows.

The classes scored are the distinct artifact-label groups; artifact labels in no group take no part.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class LabelMap:
    """``classes``: the scored class names; ``groups[k]``: artifact label ids summed for class k;
    ``target``: data label -> class id, or None for a dropped label."""

    classes: list[str]
    groups: list[list[int]]
    target: dict[str, int | None]

    def probabilities(self, probs: np.ndarray) -> np.ndarray:
        """(N, C_artifact) -> (N, K): each class' summed probability."""
        return np.stack([probs[:, g].sum(axis=1) for g in self.groups], axis=1)

    def gold(self, labels: Sequence[str], source: str) -> tuple[np.ndarray, np.ndarray]:
        """(kept row mask (N,), class ids of the kept rows).

        Raises:
            ValueError: a data label the map does not name (naming it, its first row and ``source``).
        """
        unknown = [(i, lab) for i, lab in enumerate(labels) if lab not in self.target]
        if unknown:
            i, lab = unknown[0]
            names = sorted({lab for _, lab in unknown})
            raise ValueError(
                f"{source}: data labels {names} (first at row {i}) are not in the label map; map each one to an "
                f"artifact label, a list of them, or null to drop its rows"
            )
        keep = np.array([self.target[lab] is not None for lab in labels], dtype=bool)
        return keep, np.array([self.target[lab] for lab in labels if self.target[lab] is not None], dtype=np.int64)


def identity_map(artifact_labels: Sequence[str]) -> LabelMap:
    """The map when none is given: the data's labels are the artifact's."""
    return LabelMap(
        list(artifact_labels), [[i] for i in range(len(artifact_labels))], {n: i for i, n in enumerate(artifact_labels)}
    )


def read_label_map(path: str | Path, artifact_labels: Sequence[str]) -> LabelMap:
    """Read and check a label map file (``.yaml``/``.yml`` needs PyYAML; anything else is read as JSON).

    Raises:
        ValueError: not valid YAML/JSON (a ``!!python`` tag included), not an object, a value that is not a
            label, a flat list of labels or null, an artifact label that the artifact lacks, or two classes
            sharing an artifact label (its probability would be counted twice); each names the file and the key.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix in {".yaml", ".yml"}:
        try:
            import yaml
        except ImportError as e:
            raise ImportError(f"{path}: a YAML label map needs PyYAML (pip install pyyaml), or write it as JSON") from e
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as e:  # a !!python tag too: safe_load refuses it and builds nothing
            raise ValueError(f"{path}: not a plain YAML label map ({' '.join(str(e).split())})") from e
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"{path}: not valid JSON ({e}); a label map is {{data label: artifact label(s) or null}}"
            ) from e
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{path}: a label map is a non-empty object {{data label: artifact label(s) or null}}")
    index = {n: i for i, n in enumerate(artifact_labels)}
    classes, groups, target, owner = [], [], {}, {}
    for data_label, value in raw.items():
        if value is None:
            target[str(data_label)] = None
            continue
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(
                f"{path}: {data_label!r} maps to {value!r}; give an artifact label, a flat list of them, or null"
            )
        bad = [n for n in names if n not in index]
        if bad or not names:
            raise ValueError(
                f"{path}: {data_label!r} maps to {bad or names}, not labels of the artifact {list(artifact_labels)}"
            )
        group = sorted(index[n] for n in names)
        if group in groups:  # many data labels onto one class
            target[str(data_label)] = groups.index(group)
            continue
        clash = [artifact_labels[g] for g in group if g in owner]
        if clash:
            raise ValueError(
                f"{path}: {data_label!r} and {owner[index[clash[0]]]!r} both use artifact label {clash[0]!r} in "
                "different classes; its probability would count twice"
            )
        for g in group:
            owner[g] = str(data_label)
        classes.append(str(data_label) if len(group) > 1 else artifact_labels[group[0]])
        groups.append(group)
        target[str(data_label)] = len(groups) - 1
    return LabelMap(classes, groups, target)


def scores(gold: np.ndarray, pred: np.ndarray, classes: Sequence[str]) -> dict:
    """Accuracy and macro-F1 (%) over ``classes`` and the per-class table (precision, recall, F1 in %,
    support); a class never predicted and never gold has F1 0 (scikit-learn's ``zero_division=0``)."""
    per_class = {}
    for k, name in enumerate(classes):
        tp = int(((pred == k) & (gold == k)).sum())
        n_pred, n_gold = int((pred == k).sum()), int((gold == k).sum())
        p = tp / n_pred if n_pred else 0.0
        r = tp / n_gold if n_gold else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        per_class[name] = {"precision": 100 * p, "recall": 100 * r, "f1": 100 * f, "support": n_gold}
    return {
        "n": int(len(gold)),
        "accuracy": 100.0 * float((gold == pred).mean()) if len(gold) else 0.0,
        "macro_f1": float(np.mean([c["f1"] for c in per_class.values()])) if per_class else 0.0,
        "per_class": per_class,
    }


def evaluate(probs: np.ndarray, labels: Sequence[str], label_map: LabelMap, source: str) -> dict:
    """Score (N, C_artifact) probabilities against data labels through ``label_map``; rows whose label
    maps to null are dropped (counted in ``dropped``)."""
    keep, gold = label_map.gold(labels, source)
    pred = label_map.probabilities(probs[keep]).argmax(axis=1) if keep.any() else np.zeros(0, dtype=np.int64)
    return {**scores(gold, pred, label_map.classes), "dropped": int((~keep).sum()), "classes": label_map.classes}


def format_table(result: dict) -> str:
    """The per-class table as aligned text."""
    width = max([len(c) for c in result["per_class"]] + [5])
    lines = [f"{'class':<{width}}  precision  recall     F1  support"]
    for name, c in result["per_class"].items():
        lines.append(f"{name:<{width}}  {c['precision']:9.2f}  {c['recall']:6.2f}  {c['f1']:5.2f}  {c['support']:7d}")
    return "\n".join(lines)
