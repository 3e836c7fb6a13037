"""Read every ``results.json`` under a sweep or runs dir into one row per run (pandas).

Rows carry the figures of the paper's tables (Rahman et al. 2025, Tables 4-7): accuracy, macro-F1,
macro precision/recall, speedup, #params, size in MB, compression ratio, latency p50/p95 (ms),
throughput (sequences/s), macro-F1 retention, plus the seed, the cache hits and the run dir.
A run with a ``baseline`` block also yields a row for that baseline (``tfidf_lr``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from bertcompress.metrics import METRIC_UNIT, percent_block
from bertcompress.schema import RunResults
from bertcompress.utils.io import flatten_dict, stable_hash

log = logging.getLogger(__name__)

# config nodes that never change what a run measures (or that are swept as seeds)
IGNORED_KEYS = (
    "seed", "student.seed", "augment.seed", "compression.seed", "paths", "logger", "callbacks", "hydra", "run_name", "tags", "task_name", "debug", "benchmark",
    "use_teacher_cache", "use_student_cache", "sweep_name", "sweep_preflight", "skip_finished", "trainer.default_root_dir",
)  # fmt: skip
TABLES = {
    "baselines": "Baselines (Table 4): fine-tuned teachers and the classical floor",
    "distillation": "Distillation (Table 5): students distilled from the teacher",
    "pruning_quantization": "Pruning and quantization (Table 6): the teacher compressed",
    "combinations": "Combinations (Table 7): distilled students, pruned and/or quantized",
}


def table_of(student: str, compression: str, model: str = "") -> str:
    """Which of the paper's tables a run belongs to."""
    if model == "tfidf_lr" or (student == "none" and compression == "none"):
        return "baselines"
    if compression == "none":
        return "distillation"
    return "pruning_quantization" if student == "none" else "combinations"


def _macro(test: dict, key: str) -> float | None:
    per = test.get("per_class") or {}
    vals = [c[key] for c in per.values() if key in c]
    return sum(vals) / len(vals) if vals else None


def _seed(cfg: dict):
    """The seed a run is one draw of: ``compression.seed`` (a pruning or QAT recipe swept on one cached model),
    else ``student.seed`` for a student (swept under one teacher), else ``seed``."""
    for node in ("compression", "student"):
        seed = (cfg.get(node) or {}).get("seed")
        if seed is not None:
            return seed
    return cfg.get("seed")


def _row_from_results(path: Path, r: RunResults) -> dict:
    cfg = r.config or {}
    test = r.final_test or {}
    teacher = (r.teacher or {}).get("name") or (cfg.get("teacher") or {}).get("name")
    student = (r.student or {}).get("name") or (cfg.get("student") or {}).get("name", "none")
    compression = (cfg.get("compression") or {}).get("name", "none")
    kd = (r.student or {}).get("kd") if student != "none" else None
    flat = {
        k: v for k, v in flatten_dict(cfg).items() if not any(k == i or k.startswith(i + ".") for i in IGNORED_KEYS)
    }
    model = r.run_name or f"{teacher}"
    if kd is False:
        model += " (no KD)"
    params = r.params
    task, head = r.task, r.headline_metric
    ner = task == "ner"  # entity-level micro precision/recall/F1 (seqeval); macro_f1 = entity macro-F1 over types
    return {
        "run_dir": str(path.parent),
        "status": r.status,
        "error": r.error,
        "task": task,
        "model": model,
        "teacher": teacher,
        "student": student,
        "compression": compression,
        "kd": kd,
        "seed": _seed(cfg),
        "data": (cfg.get("data") or {}).get("name"),
        "config_hash": stable_hash(flat) if student != "none" or compression != "none" else teacher_hash(flat),
        "config_flat": flat,
        "accuracy": r.accuracy,
        "macro_f1": r.macro_f1,
        "entity_f1": r.f1 if ner else None,
        "precision": test.get("precision") if ner else _macro(test, "precision"),
        "recall": test.get("recall") if ner else _macro(test, "recall"),
        "retention": (r.retention or {}).get(head),
        "teacher_macro_f1": ((r.teacher or {}).get("test") or {}).get("macro_f1"),
        "speedup": r.speedup,
        "throughput_speedup": (r.benchmark or {}).get("throughput_speedup"),
        "compression_ratio": r.compression_ratio,
        "params": params,
        "size_mb": r.size_mb,
        "latency_p50_ms": r.latency_p50_ms,
        "latency_p95_ms": r.latency_p95_ms,
        "throughput_seq_s": r.throughput_seq_s,
        "teacher_cache_hit": (r.teacher or {}).get("cache_hit"),
        "logit_cache_hit": (r.student or {}).get("logit_cache_hit"),
        "wall_time_s": r.wall_time_s,
        # the benchmark ran while other processes competed for the cores (load average above the core count)
        "busy": bool(((r.benchmark or {}).get("machine") or {}).get("busy", False)),
        "label_names": list((test.get("per_class") or {}).keys()),
        "confusion_matrix": test.get("confusion_matrix"),
        "table": table_of(student, compression),
        "best_val_macro_f1": percent_block(r.student or r.teacher or {}).get("best_val_macro_f1"),
        # written when validation figures were fractions: converted to percent on read, noted in the report
        "units_converted": r.metric_unit != METRIC_UNIT and bool(r.student or r.teacher),
        "derived": False,
        # compression=auto: the candidates it scored on validation and timed (bertcompress.compression.auto)
        "compression_search": ((r.compression or {}).get("quantization") or {}).get("search"),
        **eval_set_columns(r.eval_sets),
    }


def eval_set_columns(sets: dict | None, who: str | None = None) -> dict:
    """Per out-of-domain set (results.json ``eval_sets``): ``<set>_macro_f1``, ``<set>_retention`` (against
    the teacher on that set) and ``<set>_teacher_macro_f1``, of the artifact, or with ``who="baseline"``
    (``"teacher"``) of the floor (the fp32 teacher); ``eval_set_names`` lists the sets."""
    out: dict = {"eval_set_names": ",".join(sets or {})}
    for name, block in (sets or {}).items():
        scores = block.get(who) if who else block
        teacher = (block.get("teacher") or {}).get("macro_f1")
        f1 = (scores or {}).get("macro_f1")
        out[f"{name}_macro_f1"] = f1
        out[f"{name}_teacher_macro_f1"] = teacher
        out[f"{name}_retention"] = f1 / teacher if f1 is not None and teacher else None
    return out


def _baseline_row(path: Path, r: RunResults, parent: dict) -> dict:
    b = r.baseline
    bench = b.get("benchmark") or {}
    test = b["test"]
    teacher_f1 = parent["teacher_macro_f1"]
    return {
        **{k: None for k in parent},
        "run_dir": str(path.parent / "baseline"),
        "status": "finished",
        "task": parent["task"],
        "model": b["name"],
        "teacher": "-",
        "student": "none",
        "compression": "none",
        "seed": parent["seed"],
        "data": parent["data"],
        "config_hash": stable_hash(
            {"baseline": b["name"], "data": parent["data"], "artifact": Path(b["artifact"]).name}
        ),
        "config_flat": {},
        "accuracy": test["accuracy"],
        "macro_f1": test["macro_f1"],
        "precision": _macro(test, "precision"),
        "recall": _macro(test, "recall"),
        "retention": test["macro_f1"] / teacher_f1 if teacher_f1 else None,
        "teacher_macro_f1": teacher_f1,
        "speedup": bench.get("speedup"),
        "throughput_speedup": bench.get("throughput_speedup"),
        "compression_ratio": bench.get("compression_ratio"),
        "params": (b.get("params") or {}).get("total"),
        "size_mb": bench.get("size_mb"),
        "latency_p50_ms": (bench.get("latency_ms") or {}).get("p50"),
        "latency_p95_ms": (bench.get("latency_ms") or {}).get("p95"),
        "throughput_seq_s": bench.get("throughput_seq_s"),
        "label_names": list((test.get("per_class") or {}).keys()),
        "confusion_matrix": test.get("confusion_matrix"),
        "table": "baselines",
        "derived": True,
        **eval_set_columns(r.eval_sets, "baseline"),
    }


def _teacher_row(path: Path, r: RunResults, parent: dict) -> dict:
    """The fine-tuned teacher of a run whose final model is a student or a compressed teacher, as a Table 4
    row: its test figures and confusion matrix, and (when benchmarked) the fp32 reference's timings."""
    t = r.teacher
    ref = (r.benchmark or {}).get("reference") or {}
    test = t["test"]
    flat = parent["config_flat"]
    return {
        **{k: None for k in parent},
        "run_dir": str(path.parent),
        "status": "finished",
        "task": parent["task"],
        "model": t.get("name", "teacher") + (" ensemble" if t.get("ensemble") else ""),
        "teacher": t.get("name"),
        "student": "none",
        "compression": "none",
        "seed": (r.config or {}).get("seed"),
        "data": parent["data"],
        "config_hash": teacher_hash(flat),
        "config_flat": {k: v for k, v in flat.items() if k.split(".")[0] in TEACHER_GROUPS},
        "accuracy": test.get("accuracy"),
        "macro_f1": test.get("macro_f1"),
        "entity_f1": test.get("f1") if parent["task"] == "ner" else None,
        "precision": _macro(test, "precision"),
        "recall": _macro(test, "recall"),
        "retention": 1.0,
        "teacher_macro_f1": test.get("macro_f1"),
        "speedup": 1.0 if ref else None,
        "compression_ratio": 1.0 if ref else None,
        "params": (t.get("params") or {}).get("total"),
        "size_mb": ref.get("size_mb"),
        "latency_p50_ms": (ref.get("latency_ms") or {}).get("p50"),
        "latency_p95_ms": (ref.get("latency_ms") or {}).get("p95"),
        "throughput_seq_s": ref.get("throughput_seq_s"),
        "busy": parent["busy"],
        "label_names": list((test.get("per_class") or {}).keys()),
        "confusion_matrix": test.get("confusion_matrix"),
        "table": "baselines",
        "derived": True,
        **eval_set_columns(r.eval_sets, "teacher"),
    }


# the config groups that decide a fine-tuned teacher (its Table 4 row is one configuration across runs)
TEACHER_GROUPS = ("teacher", "teacher_ensemble", "data", "task", "trainer")


def teacher_hash(flat: dict) -> str:
    """The configuration hash of a run's fine-tuned teacher: the teacher-defining keys only."""
    return stable_hash({k: v for k, v in flat.items() if k.split(".")[0] in TEACHER_GROUPS})


def load_runs(root: str | Path) -> pd.DataFrame:
    """One row per ``results.json`` under ``root`` (failed runs included, ``status='failed'``), plus one
    row per baseline block. Files that are not valid JSON, or of another schema (no ``status``, fields of
    other types), are skipped with a warning naming them, and listed in ``runs.attrs["skipped_files"]``.

    Raises:
        FileNotFoundError: when ``root`` does not exist or holds no results.json (or none that is valid JSON,
            naming them).
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such dir; give a sweep dir (logs/<task>/multiruns/<time>) or a runs dir")
    rows, invalid = [], []
    for path in sorted(root.rglob("results.json")):
        if "artifact" in path.parts:
            continue
        try:
            r = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            log.warning("Skipping %s: not valid JSON (%s)", path, e)
            invalid.append(f"{path} (not valid JSON: {e})")
            continue
        try:
            r = RunResults.from_json(r)  # ValueError: not a results.json
            found = [_row_from_results(path, r)]
            if r.baseline and found[0]["status"] == "finished":
                found.append(_baseline_row(path, r, found[0]))
            own = found[0]["student"] != "none" or found[0]["compression"] != "none"
            if own and found[0]["status"] == "finished" and (r.teacher or {}).get("test"):
                found.append(_teacher_row(path, r, found[0]))
        except (AttributeError, TypeError, KeyError, ValueError) as e:  # another schema
            log.warning("Skipping %s: not of this results schema (%s: %s)", path, type(e).__name__, e)
            invalid.append(f"{path} (not of this results schema: {type(e).__name__}: {e})")
            continue
        rows += found
    if not rows and invalid:
        raise FileNotFoundError(
            f"{root}: no readable results.json under it; not valid JSON: {'; '.join(invalid)}. Re-run those jobs "
            "(a sweep re-run into the same dir redoes them)"
        )
    if not rows:
        raise FileNotFoundError(f"{root}: no results.json under it; run `python train.py -m ...` first")
    runs = pd.DataFrame(rows)
    # the floor and the teacher rows that several jobs share are one run per (configuration, seed)
    # (a teacher-only job of that teacher and seed is its row already)
    runs = runs.sort_values("derived", kind="stable")
    runs = runs[~(runs["derived"] & runs.duplicated(["config_hash", "seed"]))].sort_index().reset_index(drop=True)
    runs.attrs["skipped_files"] = invalid  # named in the report
    runs.attrs["jobs"] = int((~runs["derived"]).sum())
    runs.attrs["converted_units"] = sorted(set(runs.loc[runs["units_converted"].fillna(False), "run_dir"]))
    return runs
