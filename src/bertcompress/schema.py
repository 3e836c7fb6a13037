"""The schema of ``results.json``: what :func:`bertcompress.pipeline.run` writes and
:mod:`bertcompress.report.collect` reads, as one dataclass with ``to_json`` / ``from_json``.

Figures are in percent (``metric_unit``); latencies in ms, sizes in MB, throughput in sequences/s;
``retention`` is a fraction. The nested blocks (``teacher``, ``student``, ``benchmark``, ``final_test``,
``eval_sets``, ...) are the dicts their stages return; the fields below are the keys a reader may rely on.
Keys this version does not know are kept in ``extra`` and written back unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunResults:
    """One job's ``results.json``. ``status`` is ``finished`` or ``failed`` (then ``error``/``traceback``)."""

    status: str
    run_name: str | None = None
    task: str = "classification"
    # "percent" for every file written since the unit was fixed; None: an older file (fractions in best_val)
    metric_unit: str | None = None
    headline_metric: str = "macro_f1"
    final_model: str | None = None  # "teacher" | "student"
    teacher: dict | None = None
    student: dict | None = None
    compression: dict | None = None
    artifact: str | None = None
    benchmark: dict | None = None
    speedup: float | None = None
    compression_ratio: float | None = None
    size_mb: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    throughput_seq_s: float | None = None
    baseline: dict | None = None
    beats_baseline: bool | None = None
    eval_sets: dict | None = None
    final_val: dict | None = None
    inference_val: dict | None = None
    retention: dict | None = None
    accuracy: float | None = None
    macro_f1: float | None = None
    f1: float | None = None  # task=ner: the entity F1, the headline figure
    final_test: dict | None = None
    params: int | None = None
    data: dict | None = None
    machine: dict | None = None
    caches: list | None = None
    wall_time_s: float | None = None
    config: dict | None = None
    wandb_run_id: str | None = None
    skipped: bool | None = None
    error: str | None = None
    traceback: str | None = None
    extra: dict = field(default_factory=dict)

    def update(self, **values: Any) -> RunResults:
        """Set fields (a stage's block of keys); a key this schema does not know goes to ``extra``."""
        names = {f.name for f in dataclasses.fields(self)} - {"extra"}
        for k, v in values.items():
            if k in names:
                setattr(self, k, v)
            else:
                self.extra[k] = v
        return self

    def to_json(self) -> dict:
        """The JSON object: every field that is set (not None), then ``extra``'s keys."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {k: v for k, v in out.items() if v is not None} | self.extra

    @classmethod
    def from_json(cls, data: Any) -> RunResults:
        """Read a results.json object (of this or an earlier version).

        Raises:
            ValueError: not an object, or no ``status`` key (not a bertcompress results.json).
        """
        if not isinstance(data, dict) or "status" not in data:
            raise ValueError("not a bertcompress results.json: no status key")
        return cls(status=str(data["status"])).update(**{k: v for k, v in data.items() if k != "status"})
