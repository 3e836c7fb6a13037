"""The evaluation stage: the saved artifact reloaded and benchmarked against the fp32 teacher in the same
process (Buuri 2022's table for NER), and the free floor (char n-gram TF-IDF + LR) measured beside it."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from bertcompress.benchmark.bench import benchmark, inference_table
from bertcompress.data.datamodule import ClassificationDataModule
from bertcompress.metrics import classification_metrics, task_metrics
from bertcompress.runtime import hf_predictor, load_artifact
from bertcompress.stages.eval_sets import score_eval_sets
from bertcompress.stages.teacher import TeacherResult
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


def teacher_reference(cfg: DictConfig, dm: ClassificationDataModule, teacher: TeacherResult):
    """The benchmark's reference: the fp32 fine-tuned teacher, loaded from its cache dir."""
    return hf_predictor(
        teacher.cache_dir, list(dm.labels), dm.max_length, cfg.teacher.get("text_normalizer"), task=dm.task
    )


def run_benchmark(cfg: DictConfig, dm: ClassificationDataModule, predictor, reference, **kwargs) -> dict:
    """Benchmark ``predictor`` (an artifact reloaded from disk) against ``reference`` on the test split,
    with the ``cfg.benchmark`` settings; ``kwargs`` go to :func:`benchmark` (e.g. ``evaluate_reference``)."""
    b = cfg.benchmark
    return benchmark(
        predictor,
        dm.texts("test"),
        dm.label_ids("test"),
        reference=reference,
        n_runs=int(b.n_runs),
        warmup=int(b.warmup),
        throughput_batches=int(b.throughput_batches),
        throughput_batch_size=int(b.throughput_batch_size),
        threads=int(b.threads),
        cuda=bool(b.get("cuda", False)),
        block_size=int(b.get("block_size", 10)),
        **kwargs,
    )


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


@dataclass
class Evaluation:
    """What the evaluation stage measured of the saved artifact: ``results`` (the results.json keys it
    sets: benchmark, speedup, latency, size, baseline, final_val, ...) and ``final_test`` (the artifact's
    test metrics when benchmarked, else the in-memory model's)."""

    results: dict
    final_test: dict


def evaluate_artifact(
    cfg: DictConfig, dm: ClassificationDataModule, artifact: Path, teacher: TeacherResult, final_test: dict
) -> Evaluation:
    """Reload ``artifact`` from disk and measure it: the benchmark against the fp32 teacher (``cfg.benchmark``),
    the classical floor beside it (``cfg.baseline``), its validation metrics (what a sweeper tunes on), and
    for NER Buuri 2022's inference table. With the benchmark off, the reloaded artifact is still scored on
    the test split (``final_test``: its metrics, not the uncompressed model's)."""
    out: dict = {}
    predictor = load_artifact(artifact, threads=int(cfg.benchmark.threads))
    reference = teacher_reference(cfg, dm, teacher) if cfg.benchmark.enabled else None
    floor = baseline_predictor(cfg, dm)
    floor_bench = None
    if reference is not None:  # one interleaved loop: the artifact, the fp32 teacher (timed once) and the floor
        bench = run_benchmark(cfg, dm, predictor, reference, extra={"baseline": floor[-1]} if floor else None)
        floor_bench = bench.pop("extra", {}).get("baseline")
        if floor_bench is not None:
            floor_bench["machine"] = bench["machine"]
        final_test = bench["test"]
        out.update(
            benchmark=bench,
            speedup=bench.get("speedup"),
            compression_ratio=bench.get("compression_ratio"),
            size_mb=bench["size_mb"],
            latency_p50_ms=bench["latency_ms"]["p50"],
            latency_p95_ms=bench["latency_ms"]["p95"],
            throughput_seq_s=bench["throughput_seq_s"],
        )
    else:  # the artifact, reloaded, on the test split: what the headline metric must describe
        final_test = task_metrics(dm.task, dm.label_ids("test"), predictor.predict_labels(dm.texts("test")), dm.labels)
    baseline = baseline_block(dm, floor, floor_bench) if floor else None
    if baseline is not None:
        out["baseline"] = baseline
        # the final model has a reason to exist only if it beats the free floor
        out["beats_baseline"] = final_test["macro_f1"] > baseline["test"]["macro_f1"]
    if dm.task == "classification" and dm.eval_sets:  # out of domain: artifact, fp32 teacher and floor

        def fp32_teacher():  # the benchmark's reference when it was loaded, else the cached teacher
            return reference or teacher_reference(cfg, dm, teacher)

        out["eval_sets"] = score_eval_sets(cfg, dm, predictor, teacher, fp32_teacher, (baseline or {}).get("artifact"))
    if dm.ids("val"):  # the compressed artifact on the validation split: what a sweeper may tune on
        out["final_val"] = task_metrics(
            dm.task, dm.label_ids("val"), predictor.predict_labels(dm.texts("val")), dm.labels
        )
    if dm.task == "ner" and reference is not None:  # Buuri 2022's table: the first 1,000 val sentences
        n = int(cfg.benchmark.get("inference_samples", 1000))
        out["inference_val"] = {
            "final": inference_table(predictor, dm.texts("val"), dm.label_ids("val"), n),
            "reference": inference_table(reference, dm.texts("val"), dm.label_ids("val"), n),
        }
    return Evaluation(out, final_test)
