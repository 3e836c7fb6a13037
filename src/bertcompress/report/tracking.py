"""W&B logging of a finished run: every results.json figure in the run summary, the per-class report as
a table (per entity type for NER), the confusion matrix as an image and, with ``logger.wandb.log_model=true``, the run's final
artifact dir as a W&B model artifact. Offline runs (``WANDB_MODE=offline``) sync later with ``wandb sync``.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)
# large or structural parts of results.json that do not belong in a flat summary
SKIP = ("config", "per_class", "confusion_matrix", "machine", "traceback", "label_names")


def flatten_results(results: dict, prefix: str = "") -> dict:
    """``{"benchmark": {"latency_ms": {"p50": 1.2}}}`` -> ``{"benchmark/latency_ms/p50": 1.2}``; numbers,
    strings and booleans only; the config, per-class blocks and confusion matrices are left out."""
    flat = {}
    for k, v in results.items():
        if k in SKIP:
            continue
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            flat.update(flatten_results(v, key + "/"))
        elif isinstance(v, bool | int | float | str) or v is None:
            flat[key] = v
    return flat


def log_results(logger, results: dict, artifact_dir: Path | None = None, log_model: bool = False) -> None:
    """Log a finished run's results to a Lightning ``WandbLogger`` (no-op for other loggers)."""
    if type(logger).__name__ != "WandbLogger":
        return
    import wandb

    run = logger.experiment
    run.summary.update(flatten_results(results))
    test = results.get("final_test") or {}
    if test.get("per_class"):
        rows = [[name, c["precision"], c["recall"], c["f1"], c["support"]] for name, c in test["per_class"].items()]
        run.log({"test/per_class": wandb.Table(columns=["label", "precision", "recall", "f1", "support"], data=rows)})
    if test.get("per_type"):  # task=ner: entity-level figures per type (seqeval)
        rows = [[name, c["precision"], c["recall"], c["f1"], c["support"]] for name, c in test["per_type"].items()]
        run.log({"test/per_type": wandb.Table(columns=["type", "precision", "recall", "f1", "support"], data=rows)})
    if test.get("confusion_matrix"):
        from bertcompress.report.figures import confusion

        with tempfile.TemporaryDirectory() as tmp:
            png = confusion(
                test["confusion_matrix"],
                list(test["per_class"]),
                Path(tmp) / "confusion.png",
                f"{results.get('run_name')} (test set)",
            )
            run.log({"test/confusion_matrix": wandb.Image(str(png))})
    if log_model and artifact_dir is not None and Path(artifact_dir).is_dir():
        name = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in str(results.get("run_name", "model")))
        art = wandb.Artifact(name=name, type="model", metadata={"macro_f1": results.get("macro_f1")})
        art.add_dir(str(artifact_dir))
        run.log_artifact(art)
        log.info("Logged %s to W&B as artifact %s", artifact_dir, name)


def finished_offline_runs(root: str | Path) -> list[Path]:
    """The offline W&B run dirs under ``root`` whose job finished: for each ``results.json`` with ``status:
    finished``, the ``wandb/offline-run-*-<wandb_run_id>`` dir beside it. A job killed part-way leaves an
    offline run that no finished results.json names, so ``wandb sync`` of this list skips it.

    Raises:
        FileNotFoundError: ``root`` is not a dir.
    """
    import json

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a dir; give a run dir or a sweep dir (logs/<task_name>/multiruns/...)")
    runs = []
    for path in sorted(root.rglob("results.json")):
        try:
            r = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        rid = r.get("wandb_run_id") if isinstance(r, dict) and r.get("status") == "finished" else None
        if rid:
            runs += sorted(path.parent.glob(f"wandb/offline-run-*-{rid}"))
    return runs
