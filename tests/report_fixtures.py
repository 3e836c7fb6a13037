"""A tiny fixture sweep: results.json files with known numbers, in the shape pipeline.run writes them."""

from __future__ import annotations

import json
from pathlib import Path

LABELS = ["anger", "joy", "sadness"]


def _test(acc: float, f1: float) -> dict:
    return {
        "n": 30,
        "accuracy": acc,
        "macro_f1": f1,
        "per_class": {
            n: {"precision": f1 + i, "recall": f1 - i, "f1": f1, "support": 10} for i, n in enumerate(LABELS)
        },
        "confusion_matrix": [[8, 1, 1], [2, 7, 1], [1, 1, 8]],
    }


def result(teacher, student, compression, seed, acc, f1, latency, size_mb, kd=True, baseline_f1=None):
    """One results.json dict; speedup/compression against a 20 ms, 400 MB teacher with macro-F1 50."""
    name = teacher if student == "none" else f"{teacher}→{student}"
    name = name if compression == "none" else f"{name}+{compression}"
    r = {
        "status": "finished",
        "run_name": name,
        "task": "classification",
        "teacher": {"name": teacher, "cache_hit": seed != 1, "test": _test(55.0, 50.0)},
        "accuracy": acc,
        "macro_f1": f1,
        "final_test": _test(acc, f1),
        "retention": {"macro_f1": f1 / 50.0},
        "speedup": 20.0 / latency,
        "compression_ratio": 400.0 / size_mb,
        "size_mb": size_mb,
        "latency_p50_ms": latency,
        "latency_p95_ms": latency * 1.2,
        "throughput_seq_s": 1000.0 / latency,
        "params": int(size_mb * 250_000),
        "wall_time_s": 10.0,
        "config": {
            "seed": seed,
            "data": {"name": "fixture"},
            "teacher": {"name": teacher},
            "student": {"name": student, "kd": kd},
            "compression": {"name": compression},
            "paths": {"output_dir": f"/tmp/x/{seed}"},
        },
    }
    if student != "none":
        r["student"] = {"name": student, "kd": kd, "logit_cache_hit": seed != 1 if kd else None}
    if baseline_f1 is not None:
        r["baseline"] = {
            "name": "tfidf_lr",
            "artifact": "/cache/baselines/tfidf_lr-abc",
            "test": _test(baseline_f1 + 3, baseline_f1),
            "params": {"total": 1000},
            "benchmark": {
                "speedup": 4.0,
                "compression_ratio": 20.0,
                "size_mb": 20.0,
                "latency_ms": {"p50": 5.0, "p95": 6.0},
            },
        }
    return r


def write_sweep(root: Path) -> Path:
    """6 jobs over seeds 1 and 2 plus a failed job; returns ``root``."""
    jobs = [
        ("t", "none", "none", 1, 55.0, 50.0, 20.0, 400.0, True, 48.0),
        ("t", "none", "none", 2, 57.0, 52.0, 20.0, 400.0, True, 48.0),
        ("t", "cnn", "none", 1, 52.0, 47.0, 1.0, 8.0, True, None),
        ("t", "cnn", "none", 2, 54.0, 49.0, 1.0, 8.0, True, None),
        ("t", "cnn", "none", 1, 50.0, 45.0, 1.0, 8.0, False, None),
        ("t", "none", "quant", 1, 54.0, 49.5, 10.0, 100.0, True, None),
        ("t", "cnn", "prune_quant", 1, 51.0, 48.5, 0.8, 2.0, True, None),
    ]
    for k, job in enumerate(jobs):
        d = root / str(k)
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps(result(*job)))
    failed = root / str(len(jobs))
    failed.mkdir()
    (failed / "results.json").write_text(
        json.dumps({"status": "failed", "run_name": "t→bilstm", "error": "RuntimeError: boom", "config": {"seed": 1}})
    )
    return root
