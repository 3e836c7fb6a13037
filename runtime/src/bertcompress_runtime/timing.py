"""The one latency and throughput loop every benchmark uses (the training install's ``benchmark.bench``,
``bertcompress-bench`` and the scripts): models timed interleaved, in blocks, in one process, so that
machine drift cancels and every ratio comes from the same conditions. Times in ms; no torch."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np


def time_ms(fn: Callable, batch) -> float:
    """Wall time of ``fn(batch)`` in ms."""
    start = time.perf_counter()
    fn(batch)
    return (time.perf_counter() - start) * 1000.0


def interleaved_latency(fns: Sequence[Callable], singles: Sequence[Sequence], warmup: int, block_size: int) -> list:
    """Batch-1 latencies in ms per model: ``warmup`` untimed calls each on its first batches, then the rest
    of its batches timed in blocks of ``block_size``, model after model. Each block starts with one untimed
    switch-over call, so the cost of switching runtimes (thread pools waking, caches refilled) stays out.

    Args:
        fns: one callable per model, ``batch -> logits``.
        singles: per model, its batches of one text (the same texts, in each model's encoding).
    """
    lat: list[list[float]] = [[] for _ in fns]
    for fn, batches in zip(fns, singles, strict=True):
        for b in batches[:warmup]:
            fn(b)
    timed = range(warmup, min(len(b) for b in singles))
    for start in range(timed.start, timed.stop, block_size):
        block = range(start, min(start + block_size, timed.stop))
        for k, fn in enumerate(fns):
            fn(singles[k][block.start])
            lat[k] += [time_ms(fn, singles[k][i]) for i in block]
    return lat


def throughput_seconds(fns: Sequence[Callable], bigs: Sequence[Sequence]) -> list[float]:
    """Seconds per model over its large batches (one untimed warm-up batch each), batch after batch interleaved."""
    for fn, batches in zip(fns, bigs, strict=True):
        fn(batches[0])
    seconds = [0.0 for _ in fns]
    for i in range(min(len(b) for b in bigs)):
        for k, fn in enumerate(fns):
            seconds[k] += time_ms(fn, bigs[k][i]) / 1000.0
    return seconds


def latency_summary(times: Sequence[float]) -> dict:
    """``{"p50", "p95", "mean", "runs"}`` of latencies in ms."""
    t = np.asarray(times, dtype=float)
    return {"p50": float(np.percentile(t, 50)), "p95": float(np.percentile(t, 95)), "mean": float(t.mean()),
            "runs": int(len(t))}  # fmt: skip
