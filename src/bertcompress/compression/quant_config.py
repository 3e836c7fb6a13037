"""Quantization settings and their checks, below every backend (``quant_torch``, ``quant_onnx``) and the
:class:`~bertcompress.compression.quantization.Quantizer` that dispatches to them: what each backend can do,
checked when a config is built, so that none falls back to another silently."""

from __future__ import annotations

from bertcompress.compression.smoothquant import check_alpha

BACKENDS = ("torchao", "torch_ao", "onnxruntime", "openvino")


MODES = ("dynamic", "static", "fp16", "bf16", "fp32")

# OpenVINO's INFERENCE_PRECISION_HINT for the float ops (auto: the plugin's default, bf16 on AMX CPUs)
INFERENCE_PRECISIONS = ("f32", "bf16", "auto")


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
    if backend == "openvino" and mode not in {"static", "fp32", "bf16"}:
        raise QuantizationError(
            f"backend 'openvino' does mode static (NNCF int8 PTQ), fp32 or bf16 (the float graph run in that "
            f"precision), not {mode!r}"
        )
    if mode == "fp32" and backend != "openvino":
        raise QuantizationError(
            f"mode fp32 (the float graph in another runtime) is for backend openvino, not {backend!r}"
        )
    if mode == "static":
        if not calibration_batches or calibration_batches < 1:
            raise ValueError(
                "static quantization needs calibration data: set compression.quantization.calibration_batches >= 1"
            )
        if observer not in OBSERVERS:
            raise ValueError(f"compression.quantization.observer={observer!r}: expected one of {list(OBSERVERS)}")
        if backend not in {"onnxruntime", "openvino"}:
            raise QuantizationError(
                f"backend {backend!r} cannot do static int8 PTQ of transformer encoders on CPU here "
                "(torchao has no CPU static int8 config; torch.ao needs QuantStubs in the model): use "
                "compression.quantization.backend=onnxruntime"
            )
    if mode in {"fp16", "bf16"} and backend == "onnxruntime":
        raise QuantizationError(
            f"backend 'onnxruntime' here exports fp32 graphs only; use {mode} with backend=torch_ao"
        )
