"""Post-training quantization (PTQ) backends. Each one runs or fails with a clear message naming the
backend and what it lacks; none falls back to another silently.

- ``torchao``: ``quantize_(model, Int8DynamicActivationInt8WeightConfig())`` on Linear layers
  (https://github.com/pytorch/ao); dynamic only.
- ``torch_ao``: the deprecated ``torch.ao.quantization.quantize_dynamic`` (Linear and LSTM, int8),
  kept behind :func:`_torch_ao_quantize_dynamic` alone so that it can be dropped in one place.
- ``onnxruntime``: export with ``torch.onnx.export(dynamo=False)``, then ``quantize_dynamic`` or
  ``quantize_static`` with calibration batches (https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html).
  It can also quantize the embedding ``Gather`` (mBERT 711 -> 178 MB).
- ``openvino``: the same export, converted to OpenVINO IR; int8 with NNCF PTQ (``mode=static``), or the
  float graph (``fp32``, ``bf16``), run by OpenVINO (:mod:`~bertcompress.compression.quant_openvino`).
- ``fp16`` / ``bf16``: weights cast to half precision (torch backends).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from bertcompress.compression.quant_config import (  # noqa: F401  (re-exported: the settings' one home)
    BACKENDS,
    INFERENCE_PRECISIONS,
    MODES,
    OBSERVERS,
    QuantizationError,
    check_quant_config,
)
from bertcompress.compression.smoothquant import smooth_linears

log = logging.getLogger(__name__)


@dataclass
class QuantizedModel:
    """The result of PTQ: a torch module (``kind='torch'``) or an int8 ONNX file (``kind='onnx'``);
    ``extra["settings"]`` (torch) holds what a loader needs to redo it on a rebuilt module (mode, backend,
    quantize_embeddings, per_channel)."""

    kind: str
    report: dict
    module: nn.Module | None = None
    onnx_file: Path | None = None
    openvino_dir: Path | None = None
    extra: dict = field(default_factory=dict)


class Quantizer:
    """Post-training quantization (PTQ) of a trained model, outside any fit: :meth:`apply` (the compression
    step :class:`bertcompress.compression.steps.PostTrainingQuantization` uses it on the run's final model).

    Args:
        mode: ``dynamic`` (int8 weights, activations quantized on the fly), ``static`` (int8 weights and
            activations, calibrated on ``calibration_batches`` training batches with ``observer``),
            ``fp16`` or ``bf16`` (weights cast).
        backend: ``torchao``, ``torch_ao`` (deprecated torch.ao; Linear + LSTM) or ``onnxruntime``.
        quantize_embeddings: also quantize the word-embedding table (ORT: the Gather; torch_ao: 8-bit
            weight-only); torch dynamic int8 otherwise leaves it fp32.
        per_channel: one weight scale per output channel (torch_ao, onnxruntime).
        smoothquant_alpha: apply SmoothQuant (:mod:`bertcompress.compression.smoothquant`) with this
            migration strength, calibrated on ``calibration_batches`` training batches, before int8;
            None turns it off.
        op_types: onnxruntime: the op types to quantize (None: ``MatMul``, ``Gemm`` and ``Attention``, plus
            the embedding ``Gather`` with ``quantize_embeddings``); e.g. ``[MatMul, Gemm, Conv, Gather]``
            also stores a CNN's convolutions in int8.
        fuse: onnxruntime, dynamic: export a BERT encoder with eager attention and fuse its graph with
            ONNX Runtime's transformer optimizer before int8 (:func:`~bertcompress.compression.quant_onnx.export_fused`);
            other models are exported unfused (the report says so).

    Raises:
        ValueError / QuantizationError: on construction, for a config the backend cannot do
        (see :func:`check_quant_config`); never falls back to another backend.
    """

    def __init__(
        self,
        mode: str = "dynamic",
        backend: str = "torch_ao",
        quantize_embeddings: bool = False,
        per_channel: bool = False,
        calibration_batches: int | None = 8,
        observer: str = "minmax",
        smoothquant_alpha: float | None = None,
        fuse: bool = False,
        inference_precision: str = "f32",
        nodes_to_exclude: list[str] | None = None,
        op_types: list[str] | None = None,
    ):
        check_quant_config(mode, backend, calibration_batches, observer, smoothquant_alpha)
        if inference_precision not in INFERENCE_PRECISIONS:
            raise ValueError(
                f"compression.quantization.inference_precision={inference_precision!r}: expected one of "
                f"{INFERENCE_PRECISIONS} (backend openvino)"
            )
        if nodes_to_exclude and backend != "onnxruntime":
            raise ValueError("compression.quantization.nodes_to_exclude names ONNX nodes: backend=onnxruntime")
        self.inference_precision = inference_precision
        self.nodes_to_exclude = list(nodes_to_exclude or [])
        if op_types is not None and (backend != "onnxruntime" or not list(op_types)):
            raise ValueError(
                f"compression.quantization.op_types={list(op_types)}: a non-empty list of ONNX op types "
                "(e.g. [MatMul, Gemm, Conv, Gather]), with backend=onnxruntime"
            )
        self.op_types = [str(o) for o in op_types] if op_types is not None else None
        if fuse and (backend != "onnxruntime" or mode != "dynamic"):
            raise ValueError("compression.quantization.fuse=true fuses ONNX graphs: backend=onnxruntime, mode=dynamic")
        self.fuse = bool(fuse)
        self.mode, self.backend = mode, backend
        self.quantize_embeddings, self.per_channel = bool(quantize_embeddings), bool(per_channel)
        self.calibration_batches, self.observer = calibration_batches, observer
        self.smoothquant_alpha = None if smoothquant_alpha is None else float(smoothquant_alpha)
        if self.smoothquant_alpha is not None and not self.per_channel:
            log.warning(
                "compression.quantization.smoothquant_alpha=%s with per_channel=false: SmoothQuant moves the "
                "activation outliers into weight columns, which one per-tensor weight scale quantizes badly; "
                "set compression.quantization.per_channel=true",
                self.smoothquant_alpha,
            )

    @classmethod
    def from_config(cls, q) -> Quantizer:
        """From a ``compression.quantization`` config node (dict-like)."""
        return cls(
            q["mode"],
            q["backend"],
            bool(q.get("quantize_embeddings", False)),
            bool(q.get("per_channel", False)),
            q.get("calibration_batches"),
            q.get("observer", "minmax"),
            q.get("smoothquant_alpha"),
            bool(q.get("fuse", False)),
            q.get("inference_precision", "f32"),
            q.get("nodes_to_exclude"),
            q.get("op_types"),
        )

    def apply(self, module: nn.Module, calibration_loader=None, workdir: str | Path | None = None) -> QuantizedModel:
        """Quantize ``module`` (batch -> logits [batch, num_labels]); torch backends work in place.

        Args:
            calibration_loader: batches with ``input_ids``/``attention_mask`` (ONNX export needs one;
                static PTQ and SmoothQuant read ``calibration_batches`` of them).
            workdir: where the ONNX backend writes ``fp32.onnx`` and ``int8.onnx``.

        Returns:
            The quantized model; for a torch backend, ``extra["settings"]`` are the settings a loader
            applies again to a rebuilt float module before filling it with the saved tensors.

        Raises:
            ValueError: the ONNX backend or SmoothQuant without data, or the ONNX backend without a workdir.
        """
        from bertcompress.compression.quant_onnx import export_onnx, quantize_onnx  # onnx, onnxruntime: on use
        from bertcompress.compression.quant_torch import quantize_torch

        module = module.eval()
        smoothing = None
        if self.smoothquant_alpha is not None:  # check_quant_config allows it for the int8 modes only
            if calibration_loader is None:
                raise ValueError("SmoothQuant needs calibration batches (calibration_loader=None)")
            smoothing = smooth_linears(
                module, iter(calibration_loader), self.smoothquant_alpha, max_batches=int(self.calibration_batches)
            )
        if self.backend not in {"onnxruntime", "openvino"}:
            settings = {
                "mode": self.mode,
                "backend": self.backend,
                "quantize_embeddings": bool(self.quantize_embeddings),
                "per_channel": bool(self.per_channel),
            }
            extra = {"settings": settings}
            qmodule, report = quantize_torch(
                module, self.mode, self.backend, self.quantize_embeddings, self.per_channel
            )
            return QuantizedModel("torch", {**report, "smoothquant": smoothing}, module=qmodule, extra=extra)
        if calibration_loader is None:
            raise ValueError(
                f"backend {self.backend!r} needs a data batch to export the model (calibration_loader=None)"
            )
        if workdir is None:
            raise ValueError(f"backend {self.backend!r} needs a workdir for the exported graphs")
        example = next(iter(calibration_loader))
        if self.backend == "openvino":
            return self._openvino(module, calibration_loader, Path(workdir), example, smoothing)
        fusion = None
        if self.fuse and getattr(getattr(module, "model", None), "config", None) is not None:
            from bertcompress.compression.quant_onnx import FUSABLE, export_fused

            if module.model.config.model_type in FUSABLE:
                fp32, fusion = export_fused(module, Path(workdir) / "fp32.onnx", example)
        if fusion is None:
            fp32 = export_onnx(module, Path(workdir) / "fp32.onnx", example)
        int8 = Path(workdir) / "int8.onnx"
        calibration = None
        if self.mode == "static":
            calibration = list(itertools.islice(calibration_loader, int(self.calibration_batches)))
        report = quantize_onnx(
            fp32, int8, self.mode, self.quantize_embeddings, calibration, self.observer, self.per_channel,
            self.nodes_to_exclude, op_types=self.op_types,
        )  # fmt: skip
        report["fusion"] = fusion if fusion is not None else ("not a BERT encoder: unfused" if self.fuse else None)
        return QuantizedModel("onnx", {**report, "smoothquant": smoothing}, onnx_file=int8)

    def _openvino(
        self, module: nn.Module, calibration_loader, workdir: Path, example: dict, smoothing
    ) -> QuantizedModel:
        """Export ``module`` to ONNX (unfused: OpenVINO fuses on its own), then convert it to OpenVINO IR, int8
        with NNCF for ``mode=static``."""
        from bertcompress.compression.quant_onnx import export_onnx
        from bertcompress.compression.quant_openvino import quantize_openvino

        fp32 = export_onnx(module, workdir / "fp32.onnx", example)
        calibration = None
        if self.mode == "static":
            calibration = list(itertools.islice(calibration_loader, int(self.calibration_batches)))
        transformer = getattr(getattr(module, "model", None), "config", None) is not None
        out = workdir / "openvino"
        report = quantize_openvino(fp32, out, self.mode, calibration, transformer, self.inference_precision)
        return QuantizedModel("openvino", {**report, "smoothquant": smoothing}, openvino_dir=out)
