"""Apply the configured compression (pruning, then PTQ) to the run's final model and save it as an artifact.

The paper's combinations: P (pruning), Q (quantization), P+Q, each after D (distillation) or not.
"""

from __future__ import annotations

import copy
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from torch import nn

from bertcompress.compression.artifact import save_artifact
from bertcompress.compression.pruning import PruningCallback, check_amount
from bertcompress.compression.quantization import QuantizationCallback, check_quant_config
from bertcompress.compression.structured import head_importance, prune_structured
from bertcompress.data.datamodule import TextEncoder

log = logging.getLogger(__name__)


@dataclass
class FinalModel:
    """The model a run compresses: ``module`` maps a batch to logits; ``hf_model`` is set for transformers."""

    name: str
    module: nn.Module
    encoder: TextEncoder
    label_names: list[str]
    normalizer: str | None = None
    hf_model: nn.Module | None = None
    task: str = "classification"


def validate_compression(cfg: DictConfig) -> None:
    """Fail fast, before any training, on a bad compression config (amount, backend, calibration)."""
    p = cfg.get("pruning")
    if p and p.get("method"):
        if p.method not in {"l1_unstructured", "structured"}:
            raise ValueError(f"compression.pruning.method={p.method!r}: expected 'l1_unstructured' or 'structured'")
        if p.method == "l1_unstructured":
            check_amount(p.amount)
        else:
            for key in ("head_fraction", "neuron_fraction"):
                if not 0.0 <= float(p[key]) < 1.0:
                    raise ValueError(f"compression.pruning.{key}={p[key]}: must lie in [0, 1)")
    q = cfg.get("quantization")
    if q and q.get("mode"):
        check_quant_config(
            q.mode, q.backend, q.get("calibration_batches"), q.get("observer", "minmax"), q.get("smoothquant_alpha")
        )


def _forward(model, batch):
    return model(batch)


def compress_and_save(
    final: FinalModel, cfg: DictConfig, out_dir: Path, calibration_loader=None, finetune=None
) -> dict:
    """Prune and/or quantize a copy of ``final`` and save it to ``out_dir`` as an artifact.

    Args:
        cfg: the ``compression`` config node (``pruning``, ``quantization``).
        calibration_loader: train batches (the final model's tokenization), for head importance and static PTQ.
        finetune: ``callable(module, callbacks)`` that fine-tunes ``module``, for the gradual pruning schedule.

    Returns:
        The compression report (what was pruned, sparsity per layer, what was quantized, the artifact format).
    """
    validate_compression(cfg)
    module = copy.deepcopy(final.module).eval()
    hf_model = getattr(module, "model", None) if final.hf_model is not None else None
    report: dict = {"name": cfg.get("name", "none"), "pruning": None, "quantization": None}
    structured = False
    p = cfg.get("pruning")
    if p and p.get("method") == "l1_unstructured":
        cb = PruningCallback(p.amount, p.scope, p.schedule, tuple(p.include), tuple(p.exclude), p.get("frequency", 10))
        if p.schedule == "gradual":
            if finetune is None:
                raise ValueError("the gradual pruning schedule needs fine-tuning; no trainer was given")
            module.train()
            finetune(module, [cb])  # the callback makes the masks permanent at fit end
            module.eval()
        else:
            cb.apply(module)
        report["pruning"] = cb.report
    elif p and p.get("method") == "structured":
        if hf_model is None:
            raise ValueError(f"structured pruning needs a transformer; the final model {final.name} is not one")
        scores = None
        if p.get("importance", "michel2019") == "michel2019" and calibration_loader is not None:
            batches = (b for b in calibration_loader)
            scores = head_importance(module, batches, _forward, max_batches=int(p.get("importance_batches", 8)))
        report["pruning"] = prune_structured(hf_model, float(p.head_fraction), float(p.neuron_fraction), scores)
        structured = True
        epochs = int(p.get("finetune_epochs", 0) or 0)
        if epochs > 0:  # recovery fine-tuning of the smaller model on the training set
            if finetune is None:
                raise ValueError("pruning.finetune_epochs > 0 needs fine-tuning; no trainer was given")
            module.train()
            finetune(module, [])
            module.eval()
        report["pruning"]["finetune_epochs"] = epochs

    q = cfg.get("quantization")
    extra = {"compression": OmegaConf.to_container(cfg, resolve=True), "model_name": final.name}
    if structured:
        extra["structure"] = report["pruning"]["structure"]
    common = dict(
        tokenizer=final.encoder.tokenizer,
        label_names=final.label_names,
        max_length=final.encoder.max_length,
        normalizer=final.normalizer,
        extra=extra,
        task=final.task,
    )
    if q and q.get("mode"):
        ptq = QuantizationCallback.from_config(q)
        with tempfile.TemporaryDirectory() as tmp:
            quantized = ptq.apply(module, calibration_loader, tmp)
            if "skeleton" in quantized.extra:  # torchao: the weights reload into this meta-device skeleton
                common["skeleton"] = quantized.extra["skeleton"]
            report["quantization"] = quantized.report
            if quantized.kind == "onnx":
                save_artifact(out_dir, "onnx", onnx_file=quantized.onnx_file, **common)
            else:
                save_artifact(out_dir, "torch", module=quantized.module, **common)
    elif hf_model is not None and not structured:
        save_artifact(out_dir, "hf", hf_model=hf_model, **common)
    else:
        save_artifact(out_dir, "torch", module=module, **common)
    report["artifact"] = str(out_dir)
    log.info("Saved the %s artifact of %s to %s", report["name"], final.name, out_dir)
    return report
