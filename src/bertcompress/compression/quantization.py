"""Post-training quantization (PTQ) backends. Each one runs or fails with a clear message naming the
backend and what it lacks; none falls back to another silently.

- ``torchao``: ``quantize_(model, Int8DynamicActivationInt8WeightConfig())`` on Linear layers
  (https://github.com/pytorch/ao); dynamic only.
- ``torch_ao``: the deprecated ``torch.ao.quantization.quantize_dynamic`` (Linear and LSTM, int8),
  kept behind :func:`_torch_ao_quantize_dynamic` alone so that it can be dropped in one place.
- ``onnxruntime``: export with ``torch.onnx.export(dynamo=False)``, then ``quantize_dynamic`` or
  ``quantize_static`` with calibration batches (https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html).
  It can also quantize the embedding ``Gather`` (mBERT 711 -> 178 MB).
- ``fp16`` / ``bf16``: weights cast to half precision (any backend name; torch only).
"""

from __future__ import annotations

import copy
import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
from torch import nn

from bertcompress.compression.smoothquant import check_alpha, smooth_linears

log = logging.getLogger(__name__)

BACKENDS = ("torchao", "torch_ao", "onnxruntime")


MODES = ("dynamic", "static", "fp16", "bf16")


OBSERVERS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


class QuantizationError(RuntimeError):
    """A backend cannot do what the config asks; the message names the backend and what it lacks."""


def check_quant_config(
    mode: str,
    backend: str,
    calibration_batches: int | None = None,
    observer: str = "minmax",
    smoothquant_alpha: float | None = None,
):
    """Validate a quantization config before any work.

    Raises:
        ValueError: unknown mode/backend/observer, static quantization or SmoothQuant without calibration
            batches, a SmoothQuant alpha outside (0, 1], or SmoothQuant with an fp16/bf16 cast.
        QuantizationError: a combination the backend does not support.
    """
    if smoothquant_alpha is not None:
        if mode in {"fp16", "bf16"}:
            raise ValueError(
                f"compression.quantization.smoothquant_alpha={smoothquant_alpha} is for int8 PTQ; "
                f"mode={mode} casts weights: set smoothquant_alpha=null"
            )
        check_alpha(smoothquant_alpha)
        if not calibration_batches or calibration_batches < 1:
            raise ValueError(
                "SmoothQuant calibrates on training batches: set compression.quantization.calibration_batches >= 1"
            )
    if mode not in MODES:
        raise ValueError(f"compression.quantization.mode={mode!r}: expected one of {MODES}")
    if backend not in BACKENDS:
        raise ValueError(f"compression.quantization.backend={backend!r}: expected one of {BACKENDS}")
    if mode == "static":
        if not calibration_batches or calibration_batches < 1:
            raise ValueError(
                "static quantization needs calibration data: set compression.quantization.calibration_batches >= 1"
            )
        if observer not in OBSERVERS:
            raise ValueError(f"compression.quantization.observer={observer!r}: expected one of {list(OBSERVERS)}")
        if backend != "onnxruntime":
            raise QuantizationError(
                f"backend {backend!r} cannot do static int8 PTQ of transformer encoders on CPU here "
                "(torchao has no CPU static int8 config; torch.ao needs QuantStubs in the model): use "
                "compression.quantization.backend=onnxruntime"
            )
    if mode in {"fp16", "bf16"} and backend == "onnxruntime":
        raise QuantizationError(
            f"backend 'onnxruntime' here exports fp32 graphs only; use {mode} with backend=torch_ao"
        )


@dataclass
class QuantizedModel:
    """The result of PTQ: a torch module (``kind='torch'``) or an int8 ONNX file (``kind='onnx'``);
    ``extra["settings"]`` (torch) holds what a loader needs to redo it on a rebuilt module (mode, backend,
    quantize_embeddings, per_channel)."""

    kind: str
    report: dict
    module: nn.Module | None = None
    onnx_file: Path | None = None
    extra: dict = field(default_factory=dict)


class Quantizer:
    """Post-training quantization (PTQ) of a trained model, outside any fit: :meth:`apply` (the compression
    step :class:`bertcompress.compression.steps.PostTrainingQuantization` uses it on the run's final model).
    :class:`QuantizationCallback` runs the same at the end of a Lightning fit.

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
    ):
        check_quant_config(mode, backend, calibration_batches, observer, smoothquant_alpha)
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
        from bertcompress.compression.quant_onnx import export_onnx, quantize_onnx  # the backends import this module
        from bertcompress.compression.quant_torch import quantize_torch

        module = module.eval()
        smoothing = None
        if self.smoothquant_alpha is not None:  # check_quant_config allows it for the int8 modes only
            if calibration_loader is None:
                raise ValueError("SmoothQuant needs calibration batches (calibration_loader=None)")
            smoothing = smooth_linears(
                module, iter(calibration_loader), self.smoothquant_alpha, max_batches=int(self.calibration_batches)
            )
        if self.backend != "onnxruntime":
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
            raise ValueError("backend 'onnxruntime' needs a data batch to export the model (calibration_loader=None)")
        if workdir is None:
            raise ValueError("backend 'onnxruntime' needs a workdir for the exported graphs")
        example = next(iter(calibration_loader))
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
            fp32, int8, self.mode, self.quantize_embeddings, calibration, self.observer, self.per_channel
        )
        report["fusion"] = fusion if fusion is not None else ("not a BERT encoder: unfused" if self.fuse else None)
        return QuantizedModel("onnx", {**report, "smoothquant": smoothing}, onnx_file=int8)


class QuantizationCallback(L.Callback):
    """PTQ where Lightning runs it: at the end of a fit, ``on_fit_end`` quantizes a copy of the trained module
    (``pl_module.student``, or the HF model of a teacher) with the datamodule's train batches as calibration
    data and keeps it in :attr:`result` (the trained module itself stays fp32). The arguments are
    :class:`Quantizer`'s.
    """

    def __init__(self, *args, **kwargs):
        self.quantizer = Quantizer(*args, **kwargs)
        self.result: QuantizedModel | None = None

    @classmethod
    def from_config(cls, q) -> QuantizationCallback:
        """From a ``compression.quantization`` config node (dict-like)."""
        out = cls.__new__(cls)
        out.quantizer, out.result = Quantizer.from_config(q), None
        return out

    def apply(self, module: nn.Module, calibration_loader=None, workdir: str | Path | None = None) -> QuantizedModel:
        """:meth:`Quantizer.apply`."""
        return self.quantizer.apply(module, calibration_loader, workdir)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import tempfile

        from bertcompress.models.students import HFStudent

        # DistillStudent keeps the batch -> logits module in .student; TeacherFinetune an HF model in .model
        student = getattr(pl_module, "student", None)
        model = copy.deepcopy(student if student is not None else HFStudent(pl_module.model)).cpu()
        loader = trainer.datamodule.train_dataloader() if getattr(trainer, "datamodule", None) else None
        q = self.quantizer
        workdir = tempfile.mkdtemp(prefix="bertcompress-ptq-") if q.backend == "onnxruntime" else None
        self.result = q.apply(model, loader, workdir)
        log.info("PTQ (%s, %s) done: %s", q.mode, q.backend, self.result.report)
