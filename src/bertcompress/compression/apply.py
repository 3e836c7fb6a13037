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
from bertcompress.compression.steps import CompressionContext, compression_steps
from bertcompress.data.encoding import TextEncoder

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
    """Fail fast, before any training, on a bad compression config: every step is built, which checks it
    (amount, fractions, mode, backend, calibration, SmoothQuant alpha)."""
    compression_steps(cfg)


def compress_and_save(
    final: FinalModel, cfg: DictConfig, out_dir: Path, calibration_loader=None, finetune=None, search=None
) -> dict:
    """Apply the steps of ``cfg`` (:func:`bertcompress.compression.steps.compression_steps`: pruning, then
    quantization) to a copy of ``final`` and save it to ``out_dir`` as an artifact.

    Args:
        cfg: the ``compression`` config node (``pruning``, ``quantization``, each with a ``_target_``).
        calibration_loader: train batches (the final model's tokenization), for head importance and static PTQ.
        finetune: ``callable(module, callbacks, epochs, optimizer, teacher=None)`` that fine-tunes ``module``, for
            gradual pruning, recovery and QAT (the step passes its own ``finetune_epochs`` and ``optimizer``;
            with ``teacher``, a module distilled from that model's logits).
        search: ``(score, time)`` callables for ``compression=auto`` (:class:`~bertcompress.compression.auto.SearchHooks`
            without ``save``, which this function adds).

    Returns:
        The compression report (what was pruned, sparsity per layer, what was quantized, the artifact dir).

    Raises:
        ValueError: a bad config, or a step that cannot apply to this model (naming the key).
    """
    steps = compression_steps(cfg)
    module = copy.deepcopy(final.module).eval()
    hf_model = getattr(module, "model", None) if final.hf_model is not None else None
    with tempfile.TemporaryDirectory() as tmp:
        context = CompressionContext(final.name, hf_model, calibration_loader, finetune, Path(tmp))
        if search is not None:
            from bertcompress.compression.auto import SearchHooks

            def save(candidate, artifact: dict, directory: Path) -> Path:
                _save(final, cfg, candidate, artifact, directory)
                return directory

            context.search = SearchHooks(save, *search)
        for step in steps:
            module = step.apply(module, context)
        _save(final, cfg, module, context.artifact, out_dir)
    report = {"name": cfg.get("name", "none"), **context.report, "artifact": str(out_dir)}
    log.info("Saved the %s artifact of %s to %s", report["name"], final.name, out_dir)
    return report


def _save(final: FinalModel, cfg: DictConfig, module, artifact: dict, out_dir: Path) -> None:
    """Save the compressed model in the format its steps left in ``artifact`` (a context's): ONNX, OpenVINO,
    a torch module, or an HF dir."""
    hf_model = getattr(module, "model", None) if final.hf_model is not None else None
    extra = {"compression": OmegaConf.to_container(cfg, resolve=True), "model_name": final.name}
    if "applied" in artifact:  # what compression=auto chose: the candidate and its settings
        extra["compression_applied"] = artifact["applied"]
    if "structure" in artifact:
        extra["structure"] = artifact["structure"]
    common = dict(
        tokenizer=final.encoder.tokenizer,
        label_names=final.label_names,
        max_length=final.encoder.max_length,
        normalizer=final.normalizer,
        extra=extra,
        task=final.task,
    )
    fmt = artifact.get("format") or ("hf" if hf_model is not None else "torch")
    if fmt == "onnx":
        save_artifact(out_dir, "onnx", onnx_file=artifact["onnx_file"], **common)
    elif fmt == "openvino":
        extra["openvino"] = {"inference_precision": artifact["openvino"]}
        save_artifact(out_dir, "openvino", openvino_dir=artifact["openvino_dir"], **common)
    elif fmt == "hf":
        save_artifact(out_dir, "hf", hf_model=hf_model, **common)
    else:
        save_artifact(
            out_dir,
            "torch",
            module=module,
            quantization=artifact.get("quantization"),
            structure=artifact.get("structure"),
            **common,
        )
