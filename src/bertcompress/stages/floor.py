"""The free floor: a text model (char 2-5-gram TF-IDF + logistic regression, ``baseline=tfidf_lr``) fitted on
the training split once per data and params (the ``baselines`` cache), reloaded from disk, and its results
block; the evaluation stage times it beside the artifact, and teacher ensembles use the same fits."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from bertcompress.artifacts import load_artifact
from bertcompress.data.datamodule import ClassificationDataModule
from bertcompress.metrics import classification_metrics
from bertcompress.utils.cache import cache_meta, load_or_build
from bertcompress.utils.manifest import FORMAT_VERSION

log = logging.getLogger(__name__)


def fit_cached_text_model(cfg: DictConfig, model_cfg: DictConfig, name: str, dm) -> tuple[Path, bool, float]:
    """Fit a text model (``TfidfLR``) on the training split once per data and params: the ``baselines``
    cache entry ``${paths.cache_dir}/baselines/<name>-<key>``; returns ``(dir, cache hit, fit time in s)``."""
    params = OmegaConf.to_container(model_cfg, resolve=True)
    # the artifact format is in the key: an entry saved as a pickle (format 1) is never reopened
    key = {"baseline": params, "data": dm.fingerprint(), "labels": list(dm.labels), "artifact_format": FORMAT_VERSION}

    def build(tmp: Path) -> dict:
        start = time.perf_counter()
        model = hydra.utils.instantiate(model_cfg).fit(dm.texts("train"), dm.label_ids("train"), dm.labels)
        fit_time = time.perf_counter() - start
        model.save(tmp, extra={"fit_time_s": fit_time})
        return {"fit_time_s": fit_time}

    path, use = load_or_build(cfg.paths.cache_dir, "baselines", name, key, build, lambda p: p)
    return path, use.cache_hit, 0.0 if use.cache_hit else cache_meta(path)["fit_time_s"]


def baseline_predictor(cfg: DictConfig, dm: ClassificationDataModule) -> tuple | None:
    """The classical floor, fitted or loaded from ``${paths.cache_dir}/baselines`` and reloaded from disk:
    ``(name, artifact path, cache hit, fit time s, predictor)``, or None for ``baseline=none``.

    Raises:
        ValueError: a baseline for a task that is not text classification.
    """
    b = cfg.get("baseline") or {}
    if b.get("name", "none") == "none":
        return None
    if dm.task != "classification":
        raise ValueError(
            f"baseline={b.name} is a text classifier; task={dm.task} has no classical floor (baseline=none)"
        )
    path, hit, fit_time = fit_cached_text_model(cfg, b.model, b.name, dm)
    return b.name, path, hit, fit_time, load_artifact(path)


def baseline_block(dm: ClassificationDataModule, floor: tuple, bench: dict | None) -> dict:
    """The floor's results block: its test figures and, when benchmarked (``bench``: its share of the job's
    one interleaved benchmark, against the same fp32 teacher as the final model), its timings and ratios."""
    name, path, hit, fit_time, predictor = floor
    block = {"name": name, "artifact": str(path), "cache_hit": hit, "fit_time_s": fit_time}
    if bench is None:
        probs = predictor.predict_proba(dm.texts("test"))
        return block | {"test": classification_metrics(dm.label_ids("test"), probs.argmax(-1).tolist(), dm.labels)}
    log.info("Baseline %s: test macro-F1 %.2f (%s)", name, bench["test"]["macro_f1"], "cached" if hit else "fitted")
    return block | {"test": bench["test"], "params": bench["params"], "benchmark": bench}
