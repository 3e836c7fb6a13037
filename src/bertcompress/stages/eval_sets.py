"""Out-of-domain scores: the reloaded artifact, the fp32 teacher and the free floor scored on each extra
labelled corpus of ``data.eval_sets`` through its label map, with the code of ``bertcompress-bench
--label-map`` (:mod:`bertcompress_runtime.labelmap`). These corpora are never trained on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from bertcompress_runtime.cli import read_labelled
from bertcompress_runtime.labelmap import evaluate, read_label_map
from omegaconf import DictConfig, OmegaConf

from bertcompress.artifacts import load_artifact
from bertcompress.data.datamodule import ClassificationDataModule
from bertcompress.stages.teacher import TeacherResult
from bertcompress.utils.cache import load_or_build
from bertcompress.utils.io import file_sha256

log = logging.getLogger(__name__)
PROBS = "probs.npy"


def eval_set_specs(cfg: DictConfig) -> dict[str, dict]:
    """``data.eval_sets`` as ``{name: {path, text_column, label_column, label_map, limit}}``, checked.

    Raises:
        FileNotFoundError: a corpus or label-map file that does not exist (naming its key).
        ValueError: a set without ``path`` or ``label_map``.
    """
    sets = OmegaConf.to_container(OmegaConf.select(cfg, "data.eval_sets") or {}, resolve=True)
    out = {}
    for name, spec in sets.items():
        if spec is None:  # data.eval_sets.<name>=null switches one off
            continue
        missing = [k for k in ("path", "label_map") if not spec.get(k)]
        if missing:
            raise ValueError(f"data.eval_sets.{name}: set {missing} (a labelled CSV/TSV and its label map)")
        for k in ("path", "label_map"):
            if not Path(spec[k]).is_file():
                raise FileNotFoundError(
                    f"data.eval_sets.{name}.{k}={spec[k]}: no such file (set BERTCOMPRESS_DATA_DIR, or "
                    f"data.eval_sets.{name}=null to skip this set)"
                )
        out[str(name)] = {"text_column": "text", "label_column": "label", "limit": None, **spec}
    return out


def _read(spec: dict) -> tuple[list[str], list[str]]:
    texts, labels = read_labelled(str(spec["path"]), spec["text_column"], spec["label_column"])
    n = spec.get("limit")
    return (texts[:n], labels[:n]) if n else (texts, labels)


def _teacher_probs(
    cfg: DictConfig, dm, teacher: TeacherResult, reference: Callable, name: str, spec: dict, texts: list[str]
) -> np.ndarray:
    """The fp32 teacher's (N, C) probabilities on a set (``reference()`` gives its predictor): computed once
    per teacher and corpus (``eval_probs`` cache), since the teacher is the slowest model of a run."""
    key = {
        "teacher": teacher.cache_dir.name,
        "file": file_sha256(spec["path"]),
        "text_column": spec["text_column"],
        "limit": spec.get("limit"),
        "max_length": dm.max_length,
    }

    def build(tmp: Path) -> dict:
        np.save(tmp / PROBS, reference().predict_proba(texts, dm.eval_batch_size).astype(np.float32))
        return {"n": len(texts)}

    probs, _ = load_or_build(
        cfg.paths.cache_dir, "eval_probs", f"{teacher.cache_dir.name}-{name}", key, build,
        lambda p: np.load(p / PROBS, allow_pickle=False),
    )  # fmt: skip
    return probs


def score_eval_sets(
    cfg: DictConfig,
    dm: ClassificationDataModule,
    predictor,
    teacher: TeacherResult,
    reference: Callable,
    baseline_artifact: str | None,
) -> dict:
    """Per set of ``data.eval_sets``: the artifact's scores (n, rows dropped by the map, accuracy, macro-F1
    over the mapped classes, the per-class table), the fp32 teacher's and the floor's (``teacher``,
    ``baseline``), and ``retention`` = artifact macro-F1 / teacher macro-F1. ``reference()`` gives the fp32
    teacher's predictor, called only when its probabilities on a set are not cached yet.

    Raises:
        FileNotFoundError, ValueError: a missing file, a bad label map or a data label it does not map.
    """
    specs = eval_set_specs(cfg)
    if not specs:
        return {}
    floor = load_artifact(baseline_artifact) if baseline_artifact else None
    out = {}
    for name, spec in specs.items():
        texts, labels = _read(spec)
        lmap = read_label_map(spec["label_map"], dm.labels)
        model = evaluate(predictor.predict_proba(texts, dm.eval_batch_size), labels, lmap, str(spec["path"]))
        ref = evaluate(_teacher_probs(cfg, dm, teacher, reference, name, spec, texts), labels, lmap, str(spec["path"]))
        block = {
            **model,
            "path": str(spec["path"]),
            "label_map": str(spec["label_map"]),
            "teacher": ref,
            "retention": model["macro_f1"] / max(ref["macro_f1"], 1e-9),
        }
        if floor is not None:
            block["baseline"] = evaluate(floor.predict_proba(texts), labels, lmap, str(spec["path"]))
        log.info(
            "%s (%d rows, %d dropped by the label map): macro-F1 %.2f, teacher %.2f, floor %s",
            name, model["n"], model["dropped"], model["macro_f1"], ref["macro_f1"],
            f"{block['baseline']['macro_f1']:.2f}" if floor is not None else "-",
        )  # fmt: skip
        out[name] = block
    return out
