"""The one timing loop: warm-up untimed, blocks interleaved model after model, a switch-over call per block."""

from __future__ import annotations

import pytest
from bertcompress_runtime.timing import interleaved_latency, latency_summary, throughput_seconds


def test_interleaved_blocks_warmup_and_switch_over_calls():
    calls = []
    fns = [lambda b, k=k: calls.append((k, b)) for k in ("a", "b")]
    singles = [list(range(7)), list(range(7))]
    lat = interleaved_latency(fns, singles, warmup=2, block_size=3)
    assert [len(x) for x in lat] == [5, 5]  # batches 2..6 timed, warm-up 0..1 not
    assert calls[:4] == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    # each block: one untimed switch-over call on its first batch, then the block, model after model
    assert calls[4:] == [("a", 2), ("a", 2), ("a", 3), ("a", 4), ("b", 2), ("b", 2), ("b", 3), ("b", 4),
                         ("a", 5), ("a", 5), ("a", 6), ("b", 5), ("b", 5), ("b", 6)]  # fmt: skip
    assert all(t >= 0 for x in lat for t in x)


def test_throughput_warms_up_once_and_interleaves_batches():
    calls = []
    fns = [lambda b, k=k: calls.append((k, b)) for k in ("a", "b")]
    seconds = throughput_seconds(fns, [[0, 1], [0, 1]])
    assert calls == [("a", 0), ("b", 0), ("a", 0), ("b", 0), ("a", 1), ("b", 1)] and len(seconds) == 2
    assert latency_summary([1.0, 2.0, 3.0, 10.0]) == pytest.approx({"p50": 2.5, "p95": 8.95, "mean": 4.0, "runs": 4})
