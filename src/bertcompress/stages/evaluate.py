"""The evaluation stage: the saved artifact reloaded and benchmarked against the fp32 teacher in the same
process (Buuri 2022's table for NER), with the free floor (:mod:`bertcompress.stages.floor`) beside it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from bertcompress.artifacts import hf_predictor, load_artifact
from bertcompress.benchmark.bench import benchmark, inference_table
from bertcompress.data.datamodule import ClassificationDataModule
from bertcompress.metrics import task_metrics
from bertcompress.stages.eval_sets import score_eval_sets
from bertcompress.stages.floor import baseline_block, baseline_predictor
from bertcompress.stages.teacher import TeacherResult

log = logging.getLogger(__name__)


def teacher_reference(cfg: DictConfig, dm: ClassificationDataModule, teacher: TeacherResult):
    """The benchmark's reference: the fp32 fine-tuned teacher, loaded from its cache dir."""
    return hf_predictor(
        teacher.cache_dir, list(dm.labels), dm.max_length, cfg.teacher.get("text_normalizer"), task=dm.task
    )


def run_benchmark(
    cfg: DictConfig,
    dm: ClassificationDataModule,
    predictor,
    reference,
    split: str = "test",
    throughput_batch_size: int | None = None,
    **kwargs,
) -> dict:
    """Benchmark ``predictor`` (an artifact reloaded from disk) against ``reference`` on ``split`` (``val`` for
    ``compression=auto``'s search), with the ``cfg.benchmark`` settings (``throughput_batch_size`` overrides
    its batch size); ``kwargs`` go to :func:`benchmark` (e.g. ``evaluate_reference``, ``extra``)."""
    b = cfg.benchmark
    return benchmark(
        predictor,
        dm.texts(split),
        dm.label_ids(split),
        reference=reference,
        n_runs=int(b.n_runs),
        warmup=int(b.warmup),
        throughput_batches=int(b.throughput_batches),
        throughput_batch_size=int(throughput_batch_size or b.throughput_batch_size),
        threads=int(b.threads),
        cuda=bool(b.get("cuda", False)),
        block_size=int(b.get("block_size", 10)),
        **kwargs,
    )


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
