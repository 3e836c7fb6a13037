"""Unstructured L1 magnitude pruning (Rahman et al. 2025 prune the Linear layers, 30-50%), one-shot or on
the cubic schedule of Zhu & Gupta 2017 ("To prune, or not to prune", arXiv:1710.01878).

The weight matrices pruned are those of Linear layers (every one in a transformer), Conv1d/Conv2d
layers and LSTM/GRU layers (``weight_ih_l*`` and ``weight_hh_l*``), so that the static students
(CNN, BiLSTM, CNN-LSTM and their ensembles, whose only Linear is the excluded classifier) are pruned
too: with Linear layers alone, ``compression=prune`` zeroed nothing in them.

Built on ``torch.nn.utils.prune``: masks are applied as forward pre-hooks while training and made
permanent (``prune.remove``) before saving. Dense kernels do not skip zeros, so unstructured
sparsity shrinks a *compressed* file but not latency; the benchmark reports what it measures.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Sequence

import lightning as L
import torch
from torch import nn
from torch.nn.utils import prune

log = logging.getLogger(__name__)

DEFAULT_EXCLUDE = ("*embeddings*", "*classifier*", "*pooler*")
PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.RNNBase)

# (qualified name, module, parameter name): e.g. ("encoder.layer.0.output.dense", Linear, "weight"),
# ("encoder.lstm.weight_hh_l0", LSTM, "weight_hh_l0")
Target = tuple[str, nn.Module, str]


def prunable_weights(
    model: nn.Module, include: Sequence[str] = ("*",), exclude: Sequence[str] = DEFAULT_EXCLUDE
) -> list[Target]:
    """The weight matrices of the Linear, Conv1d/Conv2d and LSTM/GRU layers whose qualified module name
    matches ``include`` and none of ``exclude`` (fnmatch globs). Biases are never pruned.

    The default excludes embeddings, the classifier and the pooler, as in Rahman et al. 2025.
    """
    out: list[Target] = []
    for name, module in model.named_modules():
        if not isinstance(module, PRUNABLE_TYPES):
            continue
        if not any(fnmatch.fnmatch(name, p) for p in include) or any(fnmatch.fnmatch(name, p) for p in exclude):
            continue
        if isinstance(module, nn.RNNBase):
            out += [(f"{name}.{w}", module, w) for w in module._flat_weights_names if w.startswith("weight")]
        else:
            out.append((name, module, "weight"))
    return out


def describe_layers(model: nn.Module, limit: int = 12) -> str:
    """The names of ``model``'s prunable layers (up to ``limit``), for error messages."""
    names = [n for n, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)]
    more = f", … ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more if names else "none"


def check_amount(amount: float) -> float:
    """Raise ValueError unless ``0 <= amount < 1``."""
    if not 0.0 <= float(amount) < 1.0:
        raise ValueError(f"compression.pruning.amount={amount}: must lie in [0, 1) (the fraction of weights zeroed)")
    return float(amount)


def _weight(module: nn.Module, param: str = "weight") -> torch.Tensor:
    if hasattr(module, f"{param}_mask"):
        return getattr(module, f"{param}_orig") * getattr(module, f"{param}_mask")
    return getattr(module, param)


def sparsity(modules: Sequence[Target]) -> dict:
    """Fraction of zero weights per weight matrix and overall (biases excluded); ``pruned_weights`` and
    ``weights`` are counts (params)."""
    per_layer, zeros, total = {}, 0, 0
    for name, m, param in modules:
        w = _weight(m, param)
        z = int((w == 0).sum())
        per_layer[name] = z / w.numel()
        zeros, total = zeros + z, total + w.numel()
    return {"overall": zeros / max(total, 1), "per_layer": per_layer, "pruned_weights": zeros, "weights": total}


def prune_unstructured(modules: Sequence[Target], amount: float, scope: str = "local") -> None:
    """Zero the ``amount`` fraction of smallest-|w| weights (masks stay as hooks until :func:`make_permanent`).

    Args:
        modules: ``(name, module, parameter)`` triples, see :func:`prunable_weights`.
        amount: fraction in [0, 1) of the *remaining* weights to prune now.
        scope: ``local`` (each layer loses ``amount`` of its weights) or ``global`` (one threshold over all).
    """
    check_amount(amount)
    if scope not in {"local", "global"}:
        raise ValueError(f"compression.pruning.scope={scope!r}: expected 'local' or 'global'")
    if amount == 0 or not modules:
        return
    if scope == "global":
        prune.global_unstructured(
            [(m, param) for _, m, param in modules], pruning_method=prune.L1Unstructured, amount=amount
        )
    else:
        for _, m, param in modules:
            prune.l1_unstructured(m, param, amount=amount)


def prune_to_sparsity(modules: Sequence[Target], target: float, scope: str = "local") -> None:
    """Prune until the overall sparsity of ``modules`` reaches ``target`` (masked weights stay zero)."""
    current = sparsity(modules)["overall"]
    if target <= current + 1e-9:
        return
    prune_unstructured(modules, (target - current) / (1.0 - current), scope)


def make_permanent(modules: Sequence[Target]) -> None:
    """Fold the masks into the weights (``prune.remove``): zeros stay, hooks go."""
    for _, m, param in modules:
        if hasattr(m, f"{param}_mask"):
            prune.remove(m, param)
    for m in {id(m): m for _, m, _ in modules if isinstance(m, nn.RNNBase)}.values():
        m.flatten_parameters()  # the cuDNN weight buffer, rebuilt once per RNN from its pruned tensors


def cubic_sparsity(step: int, start_step: int, end_step: int, final: float, initial: float = 0.0) -> float:
    """Zhu & Gupta 2017: ``s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (t1 - t0))^3``, clamped to [t0, t1]."""
    if end_step <= start_step:
        return final
    frac = min(max((step - start_step) / (end_step - start_step), 0.0), 1.0)
    return final + (initial - final) * (1.0 - frac) ** 3


def prune_oneshot(
    model: nn.Module,
    amount: float,
    scope: str = "local",
    include: Sequence[str] = ("*",),
    exclude: Sequence[str] = DEFAULT_EXCLUDE,
    schedule: str = "oneshot",
) -> dict:
    """Prune ``model``'s selected weights to ``amount`` sparsity (L1), make the masks permanent, and return
    the report (method, scope, schedule, amount, sparsity per layer and overall).

    Raises:
        ValueError: when no layer matches ``include``/``exclude`` (a run that zeroes nothing would be reported
            as pruned).
    """
    modules = prunable_weights(model, tuple(include), tuple(exclude))
    if not modules and amount > 0:
        raise ValueError(
            f"compression.pruning: no layer of {type(model).__name__} matches include={list(include)} "
            f"and exclude={list(exclude)}; its prunable layers: {describe_layers(model)}. "
            "Widen compression.pruning.include or narrow compression.pruning.exclude."
        )
    prune_to_sparsity(modules, amount, scope)
    make_permanent(modules)
    return {"method": "l1_unstructured", "scope": scope, "schedule": schedule, "amount": amount, **sparsity(modules)}


class PruningCallback(L.Callback):
    """Unstructured L1 pruning of the Linear, Conv and LSTM/GRU weights of ``pl_module``'s model.

    Args:
        amount: the final sparsity in [0, 1).
        scope: ``local`` or ``global``.
        schedule: ``oneshot`` (prune once when fit ends) or ``gradual`` (the cubic schedule, every
            ``frequency`` steps between ``start_fraction`` and ``end_fraction`` of training, with
            training going on after each step).
        include / exclude: fnmatch globs over module names (default: every prunable layer except
            embeddings, the classifier and the pooler).

    After fit the masks are made permanent; :attr:`report` holds the sparsity per layer and overall.

    Raises:
        ValueError: (from :meth:`apply`) when no layer of the model matches ``include``/``exclude``;
            a pruning run that zeroes nothing would be reported as pruned.
    """

    def __init__(
        self,
        amount: float = 0.3,
        scope: str = "local",
        schedule: str = "oneshot",
        include: Sequence[str] = ("*",),
        exclude: Sequence[str] = DEFAULT_EXCLUDE,
        frequency: int = 10,
        start_fraction: float = 0.0,
        end_fraction: float = 0.8,
    ):
        if schedule not in {"oneshot", "gradual"}:
            raise ValueError(f"compression.pruning.schedule={schedule!r}: expected 'oneshot' or 'gradual'")
        if scope not in {"local", "global"}:
            raise ValueError(f"compression.pruning.scope={scope!r}: expected 'local' or 'global'")
        self.amount, self.scope, self.schedule = check_amount(amount), scope, schedule
        self.include, self.exclude = tuple(include), tuple(exclude)
        self.frequency, self.start_fraction, self.end_fraction = frequency, start_fraction, end_fraction
        self.report: dict = {}

    def modules(self, model: nn.Module) -> list[Target]:
        return prunable_weights(model, self.include, self.exclude)

    def apply(self, model: nn.Module) -> dict:
        """One-shot prune ``model`` to :attr:`amount` (:func:`prune_oneshot`); keeps and returns the report."""
        self.report = prune_oneshot(model, self.amount, self.scope, self.include, self.exclude, self.schedule)
        return self.report

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.schedule != "gradual":
            return
        step, total = trainer.global_step, max(1, int(trainer.estimated_stepping_batches))
        if step % self.frequency:
            return
        target = cubic_sparsity(step, int(self.start_fraction * total), int(self.end_fraction * total), self.amount)
        prune_to_sparsity(self.modules(pl_module), target, self.scope)

    def on_fit_end(self, trainer, pl_module) -> None:
        self.apply(pl_module)
        log.info("Pruned to %.1f%% sparsity (%s, %s)", 100 * self.report["overall"], self.scope, self.schedule)
