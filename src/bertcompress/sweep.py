"""The grid sweeper of ``python train.py -m``: Hydra's basic sweeper plus a default grid, a preflight and a summary.

- ``hydra.sweeper.default_params`` (the paper's grid, ``conf/hydra/default.yaml``) is swept only when neither
  the command line nor an experiment gives a sweep axis: ``python train.py -m`` alone runs the paper's grid,
  ``python train.py -m student=cnn,bilstm`` runs those two jobs and nothing else.
- ``hydra.sweeper.params`` (an experiment's grid) merges with the command line as in Hydra's basic sweeper:
  an axis given on the command line replaces that axis of the grid.
- Preflight (``sweep_preflight: true``): before any job starts, every job's config is composed, its
  teacher, teacher members and hub student are looked up (local dir, offline package, HF cache, or
  the hub when online), and its loss and compression configs are validated. Anything that cannot be
  had stops the sweep with one message that lists it and says how to drop or get it.
  ``sweep_preflight=false`` launches anyway: those jobs fail, are recorded, and the sweep goes on.
- Summary: the finished, skipped (finished in an earlier launch) and failed jobs with their dirs; the
  command exits 1 when a job failed.

Source: Hydra's ``BasicSweeper`` (hydra/_internal/core_plugins/basic_sweeper.py), whose job expansion is reused.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig


def _is_sweep(override: str) -> bool:
    return "," in override.split("=", 1)[-1] or "=range(" in override or "=choice(" in override


def job_models(cfg: DictConfig) -> list[tuple[str, str]]:
    """``(what, hub id)`` for every pretrained model a job config needs: its teacher, each transformer member
    of a teacher ensemble, and a hub student (``student.kind: hf``); and with ``data=hf`` its dataset
    (``("data", data.path)``)."""
    models = [("teacher", str(cfg.teacher.hub_id))]
    for name, member in (cfg.teacher.get("members") or {}).items():
        if member.get("kind", "transformer") == "transformer" and member.get("hub_id"):
            models.append((f"teacher member {name}", str(member.hub_id)))
    if cfg.student.get("name", "none") != "none" and cfg.student.get("kind") == "hf" and cfg.student.get("hub_id"):
        models.append((f"student {cfg.student.name}", str(cfg.student.hub_id)))
    if str(cfg.data.get("_target_", "")).endswith("HFDataModule"):  # data=hf: a hub dataset is looked up too
        models.append(("data", str(cfg.data.path)))
    return models


def config_problem(cfg: DictConfig) -> str | None:
    """The first error a job config would raise before training (:func:`bertcompress.validate.validate`, the
    check ``run`` makes), or None."""
    from bertcompress.validate import validate

    try:
        validate(cfg)
    except (ValueError, TypeError) as e:
        return f"{type(e).__name__}: {e}"
    return None


class GridSweep(BasicSweeper):
    """Hydra's basic grid sweeper with a default grid, a preflight of every job and a summary (module doc)."""

    def __init__(
        self, max_batch_size: int | None = None, params: dict | None = None, default_params: dict | None = None
    ):
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.default_params = dict(default_params or {})

    def _parse_config(self) -> list[str]:
        return [f"{k}={v}" for k, v in (self.params or self.default_params).items()]

    def sweep(self, arguments: list[str]):
        if not self.params and any(_is_sweep(a) for a in arguments):
            self.default_params = {}  # the command line names the grid: the paper's grid is not mixed in
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        jobs = [
            j
            for batch in self.split_arguments(parser.parse_overrides(self._parse_config() + arguments), None)
            for j in batch
        ]
        configs = [self.hydra_context.config_loader.load_sweep_config(self.config, list(j)) for j in jobs]
        if self.config.get("sweep_preflight", True):
            problems = preflight(configs)
            if problems:
                print(problems, file=sys.stderr)
                sys.exit(2)
        start = time.time()
        returns = super().sweep(arguments)
        failed = print_summary([Path(c.hydra.sweep.dir) / str(c.hydra.sweep.subdir) for c in configs], start)
        if failed:
            sys.exit(1)
        return returns


def preflight(configs: Sequence[DictConfig]) -> str | None:
    """One message listing the models no source can supply and the jobs whose config is invalid, or None."""
    from bertcompress.data.hf_io import dataset_unavailable
    from bertcompress.models.resolver import model_unavailable

    missing: dict[str, tuple[str, str, list[str]]] = {}
    invalid: list[str] = []
    checked: dict[str, str | None] = {}
    for cfg in configs:
        job = ",".join(cfg.hydra.overrides.task) or "(no overrides)"
        for what, hub_id in job_models(cfg):
            if hub_id not in checked:
                checked[hub_id] = (
                    dataset_unavailable(hub_id, cfg.data.get("config_name"))
                    if what == "data"
                    else (model_unavailable(hub_id))
                )
            if checked[hub_id]:
                missing.setdefault(hub_id, (what, checked[hub_id], []))[2].append(job)
        problem = config_problem(cfg)
        if problem:
            invalid.append(f"  {job}: {problem}")
    if not missing and not invalid:
        return None
    lines = [f"The sweep was not started: {len(configs)} jobs were checked before launching."]
    if missing:
        lines.append("These models (or datasets) cannot be had here:")
        for hub_id, (what, why, jobs) in missing.items():
            lines.append(f"  {hub_id} ({what}, {len(jobs)} job(s)): {why}")
        lines.append(
            "Drop them from the sweep (e.g. teacher=me5_small, or an offline student such as student=cnn), get them "
            "while online (they land in the HF cache), or pass a local dir as the hub id."
        )
    if invalid:
        lines.append("These jobs have an invalid config:")
        lines += invalid
    lines.append("To launch anyway and record those jobs as failed: sweep_preflight=false.")
    return "\n".join(lines)


def print_summary(job_dirs: Sequence[Path], start: float) -> int:
    """Print one line per job (finished, skipped = finished before ``start``, failed, or no result) and the
    counts; returns the number of jobs that did not finish."""
    rows, counts = [], {"finished": 0, "skipped": 0, "failed": 0}
    for d in job_dirs:
        path = d / "results.json"
        try:
            r = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            r = {"status": "failed", "error": "no readable results.json"}
        status = r.get("status", "failed")
        if status == "finished" and path.stat().st_mtime < start:
            status = "skipped"
        status = status if status in counts else "failed"
        counts[status] += 1
        rows.append(f"  {status:<8} {d}" + (f": {r.get('error')}" if status == "failed" else ""))
    sweep_dir = Path(job_dirs[0]).parent if job_dirs else None  # logs/<task_name>/multiruns/<sweep_name>
    tail = [f"Tables and figures: python report.py {sweep_dir}   (writes {sweep_dir}/report/)"] if sweep_dir else []
    print(f"Sweep of {len(job_dirs)} jobs: {counts['finished']} finished, {counts['skipped']} skipped "
          f"(finished before), {counts['failed']} failed", *rows, *tail, sep="\n")  # fmt: skip
    return counts["failed"]
