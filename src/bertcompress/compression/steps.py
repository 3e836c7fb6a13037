"""Compression steps, declared in ``conf/compression/*.yaml`` as torchdistill declares its losses: each node
(``pruning``, ``quantization``) names its step class with ``_target_``; the steps run in that order.

A step validates its settings when it is built (so a bad config fails before any training) and has
``apply(model, context) -> model``; what it did goes into ``context.report``, and what the artifact
needs (an ONNX file, the PTQ settings, a pruned structure) into ``context.artifact``.

- :class:`UnstructuredPruning`: L1 magnitude pruning of Linear/Conv/LSTM weights, one-shot, or gradual on
  Zhu & Gupta 2017's cubic schedule inside a fine-tune, where Lightning runs :class:`PruningCallback`.
- :class:`StructuredPruning`: attention heads (Michel et al. 2019 importance) and FFN neurons removed.
- :class:`PostTrainingQuantization`: int8 (dynamic or static) or fp16/bf16 through one backend:
  ``torch_ao``, ``torchao`` or ``onnxruntime``, optionally after SmoothQuant (Xiao et al. 2023).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from bertcompress.compression.pruning import PruningCallback, prune_oneshot
from bertcompress.compression.quantization import Quantizer
from bertcompress.compression.structured import drop_layers, head_importance, prune_structured, structure_of


@dataclass
class CompressionContext:
    """What a step may use besides the model, and what it leaves for the artifact.

    Attributes:
        name: the final model's name (for messages).
        hf_model: the transformer inside the model (None for static students): structured pruning edits it.
        calibration_loader: training batches in the model's tokenization (head importance, static PTQ, ONNX export).
        finetune: ``callable(module, callbacks, epochs, optimizer)`` that fine-tunes ``module`` for ``epochs``
            with ``optimizer`` (a partial taking the parameters), for gradual pruning and recovery.
        workdir: a temp dir for exported graphs.
        report: ``{"pruning": ..., "quantization": ...}``, filled by the steps.
        artifact: ``format`` (hf, torch, onnx, openvino), ``onnx_file``, ``openvino_dir``, ``quantization``,
            ``structure``: filled by the steps.
        search: what ``compression=auto`` saves, scores and times candidates with
            (:class:`bertcompress.compression.auto.SearchHooks`); None outside a run.
    """

    name: str
    hf_model: nn.Module | None = None
    calibration_loader: Iterable | None = None
    finetune: Callable | None = None
    workdir: Path | None = None
    report: dict = field(default_factory=lambda: {"pruning": None, "quantization": None})
    artifact: dict = field(default_factory=dict)
    search: object | None = None


def run_finetune(context: CompressionContext, model: nn.Module, callbacks: list, why: str, step, **distill) -> None:
    """Fine-tune ``model`` with the step's own ``finetune_epochs`` and ``optimizer`` (a partial); ``distill``
    (``teacher``, ``loss``, ``terms``) distils it from ``teacher`` run on the same batches."""
    if context.finetune is None:
        raise ValueError(f"{why} needs fine-tuning; no trainer was given")
    model.train()
    context.finetune(model, callbacks, step.finetune_epochs, step.optimizer, **distill)
    model.eval()


class UnstructuredPruning:
    """L1 unstructured pruning to ``amount`` sparsity (``torch.nn.utils.prune``): one-shot after training, or
    gradual inside a fine-tune of ``finetune_epochs`` (with ``optimizer``), where Lightning runs the
    :class:`PruningCallback`. ``settings`` are the callback's (amount, scope, schedule, include, exclude,
    frequency), checked when the step is built.

    Raises:
        ValueError: ``amount`` outside [0, 1), an unknown ``scope`` or ``schedule``, or (in :meth:`apply`) a
            module filter that matches no layer.
    """

    def __init__(self, finetune_epochs: int = 1, optimizer=None, **settings):
        self.callback = PruningCallback(**settings)
        self.finetune_epochs, self.optimizer = int(finetune_epochs), optimizer

    @property
    def fits(self) -> bool:
        """Whether :meth:`apply` runs a fit (the gradual schedule's fine-tune)."""
        return self.callback.schedule != "oneshot"

    def apply(self, model: nn.Module, context: CompressionContext) -> nn.Module:
        cb = self.callback
        if cb.schedule == "oneshot":
            context.report["pruning"] = prune_oneshot(model, cb.amount, cb.scope, cb.include, cb.exclude)
            return model
        # gradual: Lightning runs the callback while fine-tuning; it makes the masks permanent at fit end
        run_finetune(context, model, [cb], "the gradual pruning schedule", self)
        context.report["pruning"] = cb.report
        return model


class StructuredPruning:
    """Remove ``head_fraction`` of each layer's attention heads and ``neuron_fraction`` of its FFN neurons (and
    optionally ``layer_fraction`` of the layers), in ``steps`` equal steps by importance recomputed before each,
    fine-tuning ``finetune_epochs`` after each step to recover (transformers only).

    Recovery with ``distill`` (``{temperature, alpha, hidden_weight}``) distils the pruned model from the
    unpruned one on the same batches: logits (KL at T, mixed with CE by alpha) plus TinyBERT's hidden-state
    MSE between each kept layer and its unpruned self (pruning heads and neurons keeps the width), as CoFi
    prunes with layer-wise distillation (Xia et al. 2022, arXiv:2204.00408). Without it, recovery
    fine-tunes on the labels alone.

    Raises:
        ValueError: a fraction outside [0, 1), ``steps < 1``, bad distillation settings, or (in :meth:`apply`)
            a final model that is no transformer.
    """

    def __init__(
        self,
        head_fraction: float = 0.5,
        neuron_fraction: float = 0.5,
        importance: str = "michel2019",
        importance_batches: int = 8,
        finetune_epochs: int = 1,
        optimizer=None,
        steps: int = 1,
        layer_fraction: float = 0.0,
        layer_selection: str = "top",
        distill: dict | None = None,
    ):
        for key, value in (
            ("head_fraction", head_fraction), ("neuron_fraction", neuron_fraction), ("layer_fraction", layer_fraction)
        ):  # fmt: skip
            if not 0.0 <= float(value) < 1.0:
                raise ValueError(f"compression.pruning.{key}={value}: must lie in [0, 1)")
        if int(steps) < 1 or layer_selection not in {"top", "uniform"}:
            raise ValueError(f"compression.pruning: steps={steps} must be >= 1, layer_selection top or uniform")
        self.head_fraction, self.neuron_fraction = float(head_fraction), float(neuron_fraction)
        self.importance, self.importance_batches = importance, int(importance_batches)
        self.finetune_epochs, self.optimizer = int(finetune_epochs or 0), optimizer
        self.steps, self.layer_fraction, self.layer_selection = int(steps), float(layer_fraction), layer_selection
        self.distill = dict(distill) if distill else None
        if self.distill is not None:
            from bertcompress.distill.losses import SoftTargetLoss

            extra = set(self.distill) - {"temperature", "alpha", "hidden_weight"}
            if extra:
                raise ValueError(
                    f"compression.pruning.distill: unknown keys {sorted(extra)} (temperature, alpha, hidden_weight)"
                )
            self.loss = SoftTargetLoss(
                "kl", float(self.distill.get("temperature", 2.0)), float(self.distill.get("alpha", 0.9))
            )

    @property
    def fits(self) -> bool:
        """Whether :meth:`apply` runs a fit (the recovery fine-tune)."""
        return self.finetune_epochs > 0

    def apply(self, model: nn.Module, context: CompressionContext) -> nn.Module:
        if context.hf_model is None:
            raise ValueError(f"structured pruning needs a transformer; the final model {context.name} is not one")
        teacher = copy.deepcopy(model).eval().requires_grad_(False) if self.distill and self.finetune_epochs else None
        before = sum(p.numel() for p in context.hf_model.parameters())
        kept = drop_layers(context.hf_model, self.layer_fraction, self.layer_selection) if self.layer_fraction else None
        heads0, neurons0 = (structure_of(context.hf_model)[k][0] for k in ("heads", "intermediate"))
        steps = []
        for k in range(1, self.steps + 1):
            scores = None
            if self.importance == "michel2019" and context.calibration_loader is not None:
                batches = (b for b in context.calibration_loader)
                scores = head_importance(model, batches, lambda m, b: m(b), max_batches=self.importance_batches)
            now = structure_of(context.hf_model)
            fh = 1 - round(heads0 * (1 - self.head_fraction * k / self.steps)) / now["heads"][0]
            fn = 1 - round(neurons0 * (1 - self.neuron_fraction * k / self.steps)) / now["intermediate"][0]
            report = prune_structured(context.hf_model, max(fh, 0.0), max(fn, 0.0), scores)
            if self.finetune_epochs > 0:  # recovery of the smaller model on the training set
                run_finetune(
                    context, model, [], "pruning.finetune_epochs > 0", self, **self._recovery(teacher, kept, context)
                )
            steps.append({"step": k, "params_after": report["params_after"], "structure": report["structure"]})
        report.update(
            head_fraction=self.head_fraction, neuron_fraction=self.neuron_fraction, finetune_epochs=self.finetune_epochs,
            steps=steps, params_before=before,
        )  # fmt: skip
        if kept is not None:
            report.update(layer_fraction=self.layer_fraction, layers_kept=kept)
        if teacher is not None:
            report["distill"] = {**self.distill, "teacher": "the unpruned model"}
        context.report["pruning"] = report
        context.artifact.update(format="torch", structure=report["structure"])
        return model

    def _recovery(self, teacher, kept: list[int] | None, context: CompressionContext) -> dict:
        """The distillation arguments of a recovery fine-tune (none: labels only)."""
        if teacher is None:
            return {}
        weight = float(self.distill.get("hidden_weight", 1.0))
        terms = None
        if weight > 0:
            from bertcompress.distill.features import HiddenStateMSE

            pairs = [[i + 1, j + 1] for i, j in enumerate(kept)] if kept is not None else "uniform"
            term = HiddenStateMSE(weight, pairs, projection=False)
            term.setup(context.hf_model.config, teacher.model.config, "compression.pruning.distill.hidden_weight")
            terms = {"hidden": term}
        return {"teacher": teacher, "loss": self.loss, "terms": terms}


class PostTrainingQuantization:
    """PTQ of the trained model: ``mode`` dynamic / static (int8) or fp16 / bf16, through ``backend``, with
    :class:`bertcompress.compression.quantization.Quantizer`'s settings (mode, backend, quantize_embeddings,
    per_channel, calibration_batches, observer, smoothquant_alpha); applied after training, outside any fit.

    Raises:
        ValueError: an unknown mode, backend or observer, static PTQ without ``calibration_batches``, or a
            SmoothQuant ``alpha`` outside (0, 1] or with a non-int8 mode (:func:`check_quant_config`).
    """

    def __init__(self, **settings):
        self.ptq = Quantizer(**settings)  # checks them: check_quant_config

    def apply(self, model: nn.Module, context: CompressionContext) -> nn.Module:
        quantized = self.ptq.apply(model, context.calibration_loader, context.workdir)
        context.report["quantization"] = quantized.report
        if "settings" in quantized.extra:  # a loader redoes them on the rebuilt float module
            context.artifact["quantization"] = quantized.extra["settings"]
        if quantized.kind == "onnx":
            context.artifact.update(format="onnx", onnx_file=quantized.onnx_file)
            return model
        if quantized.kind == "openvino":
            precision = quantized.report["inference_precision"]
            context.artifact.update(format="openvino", openvino_dir=quantized.openvino_dir, openvino=precision)
            return model
        context.artifact["format"] = "torch"
        return quantized.module


def compression_steps(cfg) -> list:
    """The steps of a ``compression`` config node, in order (``pruning``, then ``quantization``): each node's
    ``_target_`` class called with its other keys. Building them validates the whole config.

    Raises:
        ValueError: a node without ``_target_`` (naming the key), or a step's own check.
    """
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    steps = []
    for key in ("pruning", "quantization"):
        node = cfg.get(key) if cfg is not None else None
        if not node:
            continue
        kwargs = copy.deepcopy(OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node))
        target = kwargs.pop("_target_", None)
        if not target:
            raise ValueError(
                f"compression.{key} has no _target_: name its step class, e.g. "
                f"bertcompress.compression.steps.{'UnstructuredPruning' if key == 'pruning' else 'PostTrainingQuantization'}"
            )
        steps.append(get_class(target)(**kwargs))
    return steps
