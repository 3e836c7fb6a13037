"""Job bookkeeping: results.json written whole, resumable sweeps (a finished job is skipped when its
config matches), failed jobs recorded, and the figure a sweeper optimises."""

from __future__ import annotations

import json
import logging
import traceback
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bertcompress.schema import RunResults
from bertcompress.utils.io import atomic_write_json, flatten_dict

log = logging.getLogger(__name__)


# the config keys that decide a job's result: a finished results.json is reused only when they match
RESULT_KEYS = ("task", "seed", "data", "teacher", "student", "compression", "augment", "baseline")


def config_difference(previous: dict, cfg: DictConfig) -> str | None:
    """The first difference between a finished job's recorded config (``results.json["config"]``,
    resolved) and ``cfg`` on :data:`RESULT_KEYS`, as ``"key: old -> new"``; None when they agree.
    Where the job writes, logs and benchmarks is not compared, nor a key the recorded config lacks
    whose value is now null (a key added to the configs since, with a default that changes nothing)."""

    for key in RESULT_KEYS:
        now = OmegaConf.select(cfg, key, default=None)
        now = OmegaConf.to_container(now, resolve=True) if isinstance(now, DictConfig) else now
        old_flat, new_flat = flatten_dict({key: previous.get(key)}), flatten_dict({key: now})
        for k in sorted(set(old_flat) | set(new_flat)):
            a, b = old_flat.get(k, "<missing>"), new_flat.get(k, "<missing>")
            if a != b and not (a == "<missing>" and b is None):  # a key added since, with a null default
                return f"{k}: {a!r} -> {b!r}"
    return None


def finished_result(cfg: DictConfig) -> dict | None:
    """With ``skip_finished``, the finished ``results.json`` already in the job's run dir (``skipped: true``),
    so that re-running a sweep redoes only what did not finish; None otherwise. A finished result whose
    config differs on :data:`RESULT_KEYS` (a dir shared by two configurations) is not reused: the job runs
    again, with a warning that names the difference."""
    path = Path(cfg.paths.output_dir) / "results.json"
    if not cfg.get("skip_finished", True) or not path.is_file():
        return None
    try:
        previous = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if previous.get("status") != "finished":
        return None
    differs = config_difference(previous.get("config") or {}, cfg)
    if differs is None:
        log.info("Skipping %s: %s already finished", cfg.get("run_name"), path)
        return {**previous, "skipped": True}
    log.warning(
        "%s holds a finished result of another configuration (%s); running this job again and replacing it. "
        "Give the sweep its own sweep_name to keep both.",
        path,
        differs,
    )
    return None


def record_failure(cfg: DictConfig, error: BaseException) -> dict:
    """Write ``results.json`` with ``status: failed``, the error and its traceback (atomically); returns it."""
    failed = RunResults(
        "failed",
        cfg.get("run_name"),
        OmegaConf.select(cfg, "task.name", default="classification"),
        error=f"{type(error).__name__}: {error}",
        traceback="".join(traceback.format_exception(error)),
        config=OmegaConf.to_container(cfg, resolve=False),
    ).to_json()
    atomic_write_json(Path(cfg.paths.output_dir) / "results.json", failed)
    return failed


def metric_value(results: dict, name: str | None) -> float | None:
    """The value a sweeper optimises: ``val/macro_f1`` -> results["final_val"]["macro_f1"]; ``macro_f1`` ->
    results["macro_f1"]; NaN for a failed job (Optuna then marks the trial failed)."""
    if not name:
        return None
    if results.get("status") != "finished":
        return float("nan")
    stage, _, key = name.rpartition("/")
    block = results.get({"val": "final_val", "test": "final_test"}.get(stage, stage)) if stage else results
    if block is None or key not in block:
        raise KeyError(f"optimized_metric={name!r}: results.json has no such figure (try val/macro_f1)")
    return float(block[key])
