"""The efficiency benchmark used by every run and by ``bench.py``.

For a model artifact (and, when given, a reference artifact: the fp32 fine-tuned teacher) it measures,
in one process and interleaved (in blocks) so that machine drift cancels:

- parameters (total, non-zero, embedding vs the rest) and size on disk in MB (plus a zip-compressed
  size, since masked zeros do not shrink a dense file);
- latency p50/p95 in ms at batch 1 and throughput in sequences/s at batch 32, on the test texts
  themselves, tokenized once outside the timing, truncated at ``max_length``, after warm-up runs,
  interleaved in blocks of ``block_size`` runs;
- accuracy and macro-F1 of the artifact reloaded from disk, on the full test set;
- speedup (reference p50 / p50) and compression ratio (reference MB / MB);
- the machine (CPU model and flags, threads, library versions).

Latency is also measured on CUDA when a GPU is present and asked for (torch artifacts only).
Inference-benchmark fields follow Buuri 2022 (accuracy, precision, recall, F1, total time,
samples/s, latency).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import torch
from bertcompress_runtime.timing import interleaved_latency, latency_summary, throughput_seconds

from bertcompress.artifacts import Predictor
from bertcompress.benchmark.machine import load_average_1min, machine_info
from bertcompress.benchmark.size import artifact_params, file_mb, zipped_mb
from bertcompress.metrics import task_metrics

log = logging.getLogger(__name__)


def _figures(m: Predictor, lat: list, n_big: int, thr_time: float, throughput_batch_size: int) -> dict:
    """One model's latency (ms), throughput (sequences/s), size (MB) and parameter figures."""
    return {
        "latency_ms": {**latency_summary(lat), "batch_size": 1},
        "throughput_seq_s": n_big / thr_time if thr_time else None,
        "throughput_batch_size": throughput_batch_size,
        "size_mb": file_mb(m.weights_file),
        "size_zip_mb": zipped_mb(m.weights_file),
        "params": artifact_params(m),
        "format": m.manifest.get("format"),
        "execution": m.execution,
        "max_length": m.encoder.max_length if m.encoder is not None else None,
    }


def _test_figures(m: Predictor, texts: Sequence, labels: Sequence) -> dict:
    """One model's test metrics and Buuri 2022's inference totals (batch 64)."""
    start = time.perf_counter()
    preds = m.predict_labels(texts)
    total = time.perf_counter() - start
    return {
        "test": task_metrics(m.task, labels, preds, m.label_names),
        "inference": {
            "samples": len(texts),
            "total_time_s": total,
            "samples_per_s": len(texts) / total,
            "latency_per_sample_ms": 1000.0 * total / len(texts),
            "batch_size": 64,
        },
    }


def benchmark(
    predictor: Predictor,
    texts: Sequence[str],
    labels: Sequence[int],
    reference: Predictor | None = None,
    n_runs: int = 50,
    warmup: int = 5,
    throughput_batches: int = 8,
    throughput_batch_size: int = 32,
    threads: int | None = None,
    evaluate: bool = True,
    cuda: bool = False,
    block_size: int = 10,
    evaluate_reference: bool = True,
    extra: dict[str, Predictor] | None = None,
) -> dict:
    """Measure ``predictor`` (and ``reference`` interleaved with it) on the test texts.

    Args:
        texts / labels: the test set (labels are class ids; for ``task == "ner"`` word lists and a tag
            id per word, scored with seqeval).
        n_runs: timed batch-1 runs (the median is p50); ``warmup`` untimed runs come first.
        block_size: timed runs per model per interleaved block (see the comment in the code).
        throughput_batches: timed batches of ``throughput_batch_size`` sequences.
        threads: torch intra-op threads for the measurement (None: leave as set).
        evaluate_reference: also test the reference's accuracy (off when it is known already).
        extra: more models timed in the same interleaved loop (``{"baseline": floor}``), so that the fp32
            reference is timed once per job and every ratio comes from one process.

    Returns:
        A dict: ``latency_ms`` {p50, p95, mean}, ``throughput_seq_s``, ``size_mb``, ``size_zip_mb``,
        ``params``, ``test`` metrics, Buuri-style ``inference`` totals, and, with a reference,
        ``reference`` (the same fields) plus ``speedup`` and ``compression_ratio``; per ``extra`` model,
        ``extra[name]``: its fields, test metrics and ratios against the reference.
    """
    if threads:
        torch.set_num_threads(int(threads))
    load_before = load_average_1min()  # not machine_info(): no /proc and metadata reads before timing
    extra = dict(extra or {})
    models = [predictor] + ([reference] if reference is not None else []) + list(extra.values())
    n_single = min(n_runs + warmup, len(texts))
    singles = [m.batches(texts[:n_single], batch_size=1) for m in models]
    n_big = min(throughput_batches * throughput_batch_size, len(texts))
    bigs = [m.batches(texts[:n_big], batch_size=throughput_batch_size) for m in models]
    fns = [m.logits for m in models]
    lat = interleaved_latency(fns, singles, min(warmup, n_single), block_size)  # bertcompress_runtime.timing
    thr_time = throughput_seconds(fns, bigs)

    def block(k: int, m: Predictor, evaluate: bool = evaluate) -> dict:
        out = _figures(m, lat[k], n_big, thr_time[k], throughput_batch_size)
        if evaluate:
            out.update(_test_figures(m, texts, labels))
        return out

    result = block(0, predictor)
    ref = block(1, reference, evaluate and evaluate_reference) if reference is not None else None
    if ref is not None:
        result["reference"] = ref
    first = 1 + (ref is not None)
    outs = [result] + [block(first + i, m) for i, m in enumerate(extra.values())]
    for out in outs if ref is not None else ():
        out["speedup"] = ref["latency_ms"]["p50"] / out["latency_ms"]["p50"]
        out["throughput_speedup"] = (out["throughput_seq_s"] or 0) / (ref["throughput_seq_s"] or 1)
        out["compression_ratio"] = ref["size_mb"] / out["size_mb"]
    if extra:
        result["extra"] = dict(zip(extra, outs[1:], strict=True))
    if cuda and torch.cuda.is_available() and predictor.module is not None:
        result["cuda_latency_ms"] = _cuda_latency(predictor, singles[0], warmup)
    result["machine"] = machine_info()
    result["machine"]["load_avg_1min_before"] = load_before
    if result["machine"].get("busy"):
        log.warning(
            "The machine was busy during the benchmark (1-min load %.1f on %s cores): other processes competed "
            "for the cores; treat latency, throughput and speedup as suspect and re-run on a quiet machine.",
            result["machine"]["load_avg_1min"],
            result["machine"]["cores"],
        )
    return result


def inference_table(predictor: Predictor, texts: Sequence, labels: Sequence, limit: int = 1000) -> dict:
    """Buuri 2022's inference benchmark over the first ``limit`` examples (his: the first 1,000 sentences
    of the validation set), one example at a time as a served model sees them.

    Returns:
        ``{"samples", "accuracy", "precision", "recall", "f1", "total_time_s", "samples_per_s",
        "latency_per_sample_ms", "batch_size": 1}``: accuracy (token accuracy for NER), precision,
        recall and F1 in % (entity-level micro for NER, macro for classification), times in s and ms.
    """
    texts, labels = list(texts[:limit]), list(labels[:limit])
    predictor.predict_labels(texts[:1], batch_size=1)  # warm-up, untimed
    start = time.perf_counter()
    preds = [p for t in texts for p in predictor.predict_labels([t], batch_size=1)]
    total = time.perf_counter() - start
    m = task_metrics(predictor.task, labels, preds, predictor.label_names)
    if predictor.task == "ner":
        prf = {k: m[k] for k in ("precision", "recall", "f1")}
    else:
        per = m["per_class"].values()
        prf = {
            "precision": float(np.mean([v["precision"] for v in per])),
            "recall": float(np.mean([v["recall"] for v in per])),
            "f1": m["macro_f1"],
        }
    return {
        "samples": len(texts),
        "accuracy": m["accuracy"],
        **prf,
        "total_time_s": total,
        "samples_per_s": len(texts) / total if total else None,
        "latency_per_sample_ms": 1000.0 * total / max(1, len(texts)),
        "batch_size": 1,
    }


def _cuda_latency(predictor: Predictor, batches: list[dict], warmup: int) -> dict:
    module = predictor.module.to("cuda")
    times = []
    with torch.inference_mode():
        for i, b in enumerate(batches):
            b = {k: v.cuda() for k, v in b.items()}
            torch.cuda.synchronize()
            start = time.perf_counter()
            module(b)
            torch.cuda.synchronize()
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000)
    module.to("cpu")
    return {
        "p50": float(np.percentile(times, 50)),
        "p95": float(np.percentile(times, 95)),
        "device": torch.cuda.get_device_name(0),
    }
