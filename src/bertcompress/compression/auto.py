"""``compression=auto``: the fastest artifact whose validation macro-F1 stays within a relative ``tolerance`` of
the fp32 model's, as Intel Neural Compressor's and NNCF's accuracy-aware tuning answer it
(https://intel.github.io/neural-compressor/latest/docs/source/tuning_strategies.html,
https://openvinotoolkit.github.io/nncf/). On validation only:

1. the fp32 model is saved and scored; every candidate of the model's kind (``candidates.transformer`` or
   ``.static``: PTQ settings of any backend; one whose backend is missing is skipped and said so) is built,
   saved and scored, then all are timed with the fp32 artifact, interleaved, in this process;
2. per-layer fallback: each layer group of the fastest ONNX Runtime candidate that missed is quantized
   alone (its sensitivity), and the most sensitive groups are kept in fp32 until the tolerance holds;
3. then QAT (:mod:`bertcompress.compression.qat`); if that misses too, the fp32 model ships, said so.

The fastest within the tolerance at ``target_batch_size`` wins; the evaluation stage tests it alone.
"""

from __future__ import annotations

import copy
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from bertcompress.compression.layer_groups import MAX_GROUPS, layer_groups
from bertcompress.compression.quant_config import QuantizationError
from bertcompress.compression.steps import CompressionContext, PostTrainingQuantization

log = logging.getLogger(__name__)


@dataclass
class SearchHooks:
    """What the search needs from the stages above compression (saving, scoring and timing artifacts).

    Attributes:
        save: ``(module, artifact, out_dir) -> Path``: write ``module`` as an artifact in the format that
            ``artifact`` (a step's ``context.artifact``: format, onnx_file, ...) says.
        score: ``(artifact_dir) -> float``: validation macro-F1 (%) of the artifact reloaded from disk.
        time: ``(artifact_dirs, batch_size) -> list[dict]``: per artifact, timed interleaved in one process:
            ``p50_ms`` (batch 1), ``throughput_seq_s`` (at ``batch_size``), ``size_mb``, ``execution``.
    """

    save: Callable
    score: Callable
    time: Callable


@dataclass
class _Built:
    name: str
    settings: dict
    module: nn.Module
    artifact: dict
    report: dict
    dir: Path
    workdir: Path
    val_macro_f1: float


class AutoQuantization:
    """The accuracy-budgeted search of ``compression=auto`` (see the module docstring).

    Args:
        tolerance: the largest relative loss of validation macro-F1 (0.01: 1%).
        candidates: ``{"transformer": {name: settings}, "static": {name: settings}}``, PTQ settings
            (:class:`~bertcompress.compression.quantization.Quantizer`'s keys) per model kind.
        time_budget_s: stop building candidates after this many seconds (None: no limit).
        target_batch_size: 1 ranks by batch-1 latency p50; more ranks by throughput at that batch size.
        layer_fallback: try per-layer fallback on the fastest ONNX Runtime candidate that missed.
        max_fallback_groups: keep at most this many layer groups in fp32.
        qat: the settings of :class:`~bertcompress.compression.qat.QuantizationAwareTraining`, tried when
            nothing else qualifies (None: no QAT).

    Raises:
        ValueError: a tolerance outside [0, 1), a target batch size < 1, no candidates, or a candidate
            whose settings the backend cannot do (checked when the step is built).
    """

    fits = False  # QAT fits only as a fallback; DDP ranks other than 0 skip the search

    def __init__(
        self,
        tolerance: float = 0.01,
        candidates: dict | None = None,
        time_budget_s: float | None = None,
        target_batch_size: int = 1,
        layer_fallback: bool = True,
        max_fallback_groups: int = 6,
        qat: dict | None = None,
    ):
        if not 0.0 <= float(tolerance) < 1.0:
            raise ValueError(f"compression.quantization.tolerance={tolerance}: a relative loss in [0, 1), e.g. 0.01")
        if int(target_batch_size) < 1:
            raise ValueError(f"compression.quantization.target_batch_size={target_batch_size}: must be >= 1")
        self.candidates = {kind: dict(c or {}) for kind, c in (candidates or {}).items()}
        if not any(self.candidates.values()):
            raise ValueError("compression.quantization.candidates is empty: declare transformer and static candidates")
        for kind, named in self.candidates.items():
            for name, settings in named.items():
                try:
                    PostTrainingQuantization(**settings)
                except (ValueError, QuantizationError) as e:
                    raise ValueError(f"compression.quantization.candidates.{kind}.{name}: {e}") from e
        self.tolerance, self.time_budget_s = float(tolerance), time_budget_s
        self.target_batch_size, self.layer_fallback = int(target_batch_size), bool(layer_fallback)
        self.max_fallback_groups, self.qat = int(max_fallback_groups), qat
        if qat:
            from bertcompress.compression.qat import QuantizationAwareTraining

            QuantizationAwareTraining(**qat)  # checks the settings now

    def apply(self, model: nn.Module, context: CompressionContext) -> nn.Module:
        hooks: SearchHooks | None = context.search
        if hooks is None:
            raise ValueError("compression=auto scores candidates on validation; this caller gave no search hooks")
        start = self._start = time.perf_counter()
        kind = "transformer" if context.hf_model is not None else "static"
        fp32_dir = hooks.save(model, {}, context.workdir / "fp32")
        bar_ref = hooks.score(fp32_dir)
        bar = bar_ref * (1 - self.tolerance)
        rows = [{"candidate": "fp32", "val_macro_f1": bar_ref, "status": "reference"}]
        built: list[_Built] = []
        for name, settings in self.candidates.get(kind, {}).items():
            if self._over_budget():
                rows.append({"candidate": name, "settings": settings, "status": "skipped: time budget"})
                continue
            b = self._build(name, settings, model, context, hooks)
            if isinstance(b, str):
                rows.append({"candidate": name, "settings": settings, "status": b})
            else:
                built.append(b)
                rows.append(self._row(b, bar_ref, bar))
        self._time(hooks, fp32_dir, built, rows, round_no=1)
        winner = self._fastest(rows, built)
        if self.layer_fallback and not self._over_budget():
            fallback = self._fallback(rows, built, winner, model, context, hooks, bar_ref, bar)
            if fallback is not None:
                built.append(fallback)
                rows.append(self._row(fallback, bar_ref, bar))
                self._time(hooks, fp32_dir, [fallback] + ([winner] if winner else []), rows, round_no=2)
                winner = self._fastest(rows, built)
        if winner is None and self.qat:
            winner = self._try_qat(model, context, hooks, fp32_dir, rows, built, bar_ref, bar)
        return self._ship(winner, model, context, rows, bar_ref, start)

    def _build(self, name, settings, model, context, hooks) -> _Built | str:
        """One candidate built, saved and scored; a string says why not (a backend not installed)."""
        workdir = context.workdir / f"cand_{name}"
        workdir.mkdir(parents=True, exist_ok=True)
        sub = CompressionContext(name, None, context.calibration_loader, context.finetune, workdir)
        try:
            step = PostTrainingQuantization(**settings)
            module = step.apply(copy.deepcopy(model), sub)
        except QuantizationError as e:
            log.warning("compression=auto: candidate %s skipped: %s", name, e)
            return f"skipped: {e}"
        artifact = {**sub.artifact, "applied": {"candidate": name, "settings": dict(settings)}}
        out = hooks.save(module, artifact, workdir / "artifact")
        score = hooks.score(out)
        log.info("compression=auto: %s val macro-F1 %.2f", name, score)
        if artifact.get("format") in {"onnx", "openvino"}:  # the graph is the artifact: no torch copy kept
            module = None
        return _Built(name, dict(settings), module, artifact, sub.report["quantization"], out, workdir, score)

    def _row(self, b: _Built, ref: float, bar: float) -> dict:
        return {
            "candidate": b.name,
            "settings": b.settings,
            "val_macro_f1": b.val_macro_f1,
            "delta_val_macro_f1": b.val_macro_f1 - ref,
            "relative_loss": (ref - b.val_macro_f1) / max(ref, 1e-9),
            "within_tolerance": b.val_macro_f1 >= bar,
            "status": "built",
        }

    def _time(self, hooks: SearchHooks, fp32_dir: Path, built: list[_Built], rows: list[dict], round_no: int):
        """Time fp32 and ``built`` interleaved; write each one's figures and its speedup over fp32 of this round."""
        figures = hooks.time([fp32_dir] + [b.dir for b in built], self.target_batch_size)
        ref = figures[0]
        by_name = {r["candidate"]: r for r in rows}
        for name, fig in zip(["fp32"] + [b.name for b in built], figures, strict=True):
            row = by_name[name]
            row.update(
                {k: fig.get(k) for k in ("p50_ms", "throughput_seq_s", "size_mb", "execution", "machine_busy")},
                speedup=ref["p50_ms"] / fig["p50_ms"],
                throughput_speedup=fig["throughput_seq_s"] / ref["throughput_seq_s"],
                timing_round=round_no,
            )

    def _speed(self, row: dict) -> float:
        """Higher is faster: the speedup over fp32 in the row's own timing round, at the target batch size."""
        return row["speedup"] if self.target_batch_size == 1 else row["throughput_speedup"]

    def _fastest(self, rows: list[dict], built: list[_Built]) -> _Built | None:
        ok = [r for r in rows if r.get("within_tolerance") and "speedup" in r]
        ok = [r for r in ok if self._speed(r) > 1.0]  # slower than fp32 is no compression worth shipping
        if not ok:
            return None
        best = max(ok, key=self._speed)["candidate"]
        return next(b for b in built if b.name == best)

    def _fallback(self, rows, built, winner, model, context, hooks, ref, bar) -> _Built | None:
        """Per-layer fallback on the fastest ONNX Runtime candidate that missed the bar and is faster than
        the current winner: keep its most sensitive layer groups in fp32 until the bar holds."""
        floor = self._speed(next(r for r in rows if r["candidate"] == winner.name)) if winner else 1.0
        missed = [
            r for r in rows
            if r.get("status") == "built" and not r["within_tolerance"] and "speedup" in r
            and r["settings"].get("backend") == "onnxruntime" and self._speed(r) > floor
        ]  # fmt: skip
        if not missed:
            return None
        for target in sorted(missed, key=self._speed, reverse=True):  # fastest first, with a layer layout to use
            base = next(b for b in built if b.name == target["candidate"])
            groups = layer_groups(base.workdir / "fp32.onnx")
            if 2 <= len(groups) <= MAX_GROUPS:
                break
            target["fallback"] = f"not tried: {len(groups)} layer groups (a graph without layer names, e.g. fused)"
        else:
            return None
        every = [n for nodes in groups.values() for n in nodes]
        sensitivity, attempts = {}, []
        for g, nodes in groups.items():  # quantize this group alone: its own loss on validation
            if self._over_budget():
                return None
            alone = self._build(f"{base.name}@{g}", {**base.settings, "nodes_to_exclude": [
                n for n in every if n not in set(nodes)]}, model, context, hooks)  # fmt: skip
            sensitivity[g] = ref - alone.val_macro_f1 if isinstance(alone, _Built) else 0.0
            if isinstance(alone, _Built):  # a probe, not a candidate: free its disk
                shutil.rmtree(alone.workdir, ignore_errors=True)
        order = sorted(groups, key=lambda g: -sensitivity[g])
        target["sensitivity"] = {g: sensitivity[g] for g in order}
        target["fallback_attempts"] = attempts
        for k in range(1, min(self.max_fallback_groups, len(order) - 1) + 1):
            if self._over_budget():
                break
            kept = order[:k]
            settings = {**base.settings, "nodes_to_exclude": [n for g in kept for n in groups[g]]}
            b = self._build(f"{base.name}+fp32[{','.join(kept)}]", settings, model, context, hooks)
            if isinstance(b, _Built):
                attempts.append({"fp32_groups": kept, "val_macro_f1": b.val_macro_f1})
                if b.val_macro_f1 >= bar:
                    return b
                shutil.rmtree(b.workdir, ignore_errors=True)
        return None

    def _over_budget(self) -> bool:
        return self.time_budget_s is not None and time.perf_counter() - self._start > self.time_budget_s

    def _try_qat(self, model, context, hooks, fp32_dir, rows, built, ref, bar) -> _Built | None:
        from bertcompress.compression.qat import QuantizationAwareTraining

        workdir = context.workdir / "cand_qat"
        workdir.mkdir(parents=True, exist_ok=True)
        sub = CompressionContext("qat", context.hf_model, context.calibration_loader, context.finetune, workdir)
        module = QuantizationAwareTraining(**self.qat).apply(copy.deepcopy(model), sub)
        artifact = {**sub.artifact, "applied": {"candidate": "qat", "settings": dict(self.qat)}}
        out = hooks.save(module, artifact, workdir / "artifact")
        b = _Built("qat", dict(self.qat), module, artifact, sub.report["quantization"], out, workdir, hooks.score(out))
        built.append(b)
        rows.append(self._row(b, ref, bar))
        self._time(hooks, fp32_dir, [b], rows, round_no=3)
        return self._fastest([r for r in rows if r["candidate"] == "qat"], built)

    def _ship(self, winner: _Built | None, model, context, rows, ref, start) -> nn.Module:
        for row in rows:
            if row["candidate"] == (winner.name if winner else "fp32"):
                row["status"] = "winner" if winner else "shipped: no candidate within the tolerance"
        report = {
            "method": "auto",
            "tolerance": self.tolerance,
            "target_batch_size": self.target_batch_size,
            "reference_val_macro_f1": ref,
            "within_budget": winner is not None,
            "winner": winner.name if winner else "fp32",
            "search": rows,
            "search_time_s": time.perf_counter() - start,
        }
        if winner is None:
            log.warning(
                "compression=auto: no candidate kept val macro-F1 within %.1f%% of fp32 (%.2f) and ran faster; "
                "the fp32 model is shipped, not compressed", 100 * self.tolerance, ref,
            )  # fmt: skip
            context.report["quantization"] = report
            return model
        log.info("compression=auto: %s wins (%s)", winner.name, self._speed(next(
            r for r in rows if r["candidate"] == winner.name)))  # fmt: skip
        context.report["quantization"] = {**(winner.report or {}), **report, "settings": winner.settings}
        context.artifact.update(winner.artifact)
        return winner.module if winner.module is not None else model


def is_search(node) -> bool:
    """Whether a ``compression`` config node runs this search (its quantization step is :class:`AutoQuantization`)."""
    quantization = node.get("quantization") if node is not None else None
    return str((quantization or {}).get("_target_", "")).endswith(AutoQuantization.__name__)
