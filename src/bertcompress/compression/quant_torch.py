"""PTQ in torch: ``torch_ao`` (the deprecated ``torch.ao.quantization.quantize_dynamic``, Linear and LSTM, int8,
kept behind :func:`_torch_ao_quantize_dynamic` alone), ``torchao`` (``quantize_`` with
``Int8DynamicActivationInt8WeightConfig``, https://github.com/pytorch/ao) and fp16 / bf16 casts."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn

from bertcompress.compression.quant_config import QuantizationError, check_quant_config

log = logging.getLogger(__name__)


def quantizable_linears_filter(exclude: Sequence[str] = ("classifier",)):
    """A torchao ``filter_fn``: Linear layers whose name does not contain any of ``exclude``."""

    def keep(module: nn.Module, fqn: str) -> bool:
        return isinstance(module, nn.Linear) and not any(e in fqn for e in exclude)

    return keep


def _torch_ao_quantize_dynamic(model: nn.Module, embeddings: bool = False, per_channel: bool = False) -> nn.Module:
    """The one adapter to the deprecated ``torch.ao.quantization`` API.

    Linear and LSTM get dynamic int8; with ``embeddings`` the large embedding tables (>= 1024 rows,
    i.e. the word embeddings) get 8-bit weight-only quantization (per-row float qparams). With
    ``per_channel`` the Linear weights get one scale per output row instead of one per matrix
    (LSTM weights stay per tensor: torch.ao has no per-channel dynamic LSTM).
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from torch.ao.quantization import (
            default_dynamic_qconfig,
            float_qparams_weight_only_qconfig,
            per_channel_dynamic_qconfig,
            quantize_dynamic,
        )

        linear_qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
        spec: dict = {nn.Linear: linear_qconfig, nn.LSTM: default_dynamic_qconfig}
        if embeddings:
            spec.update(
                {
                    name: float_qparams_weight_only_qconfig
                    for name, m in model.named_modules()
                    if isinstance(m, nn.Embedding) and m.num_embeddings >= 1024
                }
            )
        return quantize_dynamic(model, spec, dtype=torch.qint8)


def quantize_torch(
    model: nn.Module, mode: str, backend: str, quantize_embeddings: bool = False, per_channel: bool = False
) -> tuple[nn.Module, dict]:
    """Quantize a torch model in eval mode; returns ``(model, report)``.

    ``quantize_embeddings`` (torch_ao only) also stores the word-embedding table in 8 bits; torch
    dynamic int8 otherwise leaves embeddings fp32 (mBERT: 455 MB instead of 178 MB).
    ``per_channel`` (torch_ao only; torchao's int8 config is per channel already): per-row weight scales.
    The report says which module types ended up quantized and which stayed fp32.
    """
    check_quant_config(mode, backend, 1)
    model = model.eval()
    if mode in {"fp16", "bf16"}:
        dtype = torch.float16 if mode == "fp16" else torch.bfloat16
        model = model.to(dtype)
        return model, {"mode": mode, "backend": "torch", "weights": str(dtype), "quantized": ["all parameters"]}
    if backend == "torchao":
        try:
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
        except ImportError as e:
            raise QuantizationError(f"backend 'torchao' is not installed ({e}): pip install torchao") from e
        if any(isinstance(m, nn.LSTM) for m in model.modules()):
            raise QuantizationError("backend 'torchao' has no int8 LSTM; use backend=torch_ao for RNN students")
        quantize_(model, Int8DynamicActivationInt8WeightConfig(), filter_fn=quantizable_linears_filter())
    else:
        model = _torch_ao_quantize_dynamic(model, embeddings=quantize_embeddings, per_channel=per_channel)
    return model, {
        "mode": mode,
        "backend": backend,
        "quantize_embeddings": quantize_embeddings and backend == "torch_ao",
        **({"per_channel": per_channel} if backend == "torch_ao" else {}),
        **quantized_parts(model),
    }


def quantized_parts(model: nn.Module) -> dict:
    """Which parts are int8 and which stayed float: counts of module types and of float parameters."""
    quantized, floating = {}, {}
    for _, m in model.named_modules():
        kind = type(m).__module__ + "." + type(m).__name__
        w = getattr(m, "weight", None)
        is_q = (
            "quantized" in kind
            or (w is not None and "AffineQuantized" in type(w).__name__)
            or (w is not None and "Int8" in type(w).__name__)
            or (w is not None and "Quant" in type(w).__name__)
        )
        if "PackedParams" in type(m).__name__:  # the container of a quantized Linear's weights
            continue
        if is_q:
            quantized[type(m).__name__] = quantized.get(type(m).__name__, 0) + 1
        elif isinstance(m, nn.Embedding | nn.Linear | nn.LSTM | nn.Conv1d):
            floating[type(m).__name__] = floating.get(type(m).__name__, 0) + 1
    return {"quantized_modules": quantized, "float_modules": floating}
