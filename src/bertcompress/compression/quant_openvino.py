"""PTQ and execution in OpenVINO (https://docs.openvino.ai): the exported ONNX graph is converted to OpenVINO's
IR (``ov.convert_model``) and, for int8, quantized with NNCF's post-training quantization
(``nncf.quantize`` on calibration batches, ``ModelType.TRANSFORMER`` for transformer encoders;
https://openvinotoolkit.github.io/nncf/). The float ops run in f32, or in bf16 on CPUs with AMX, as the
artifact's ``inference_precision`` says.

OpenVINO and NNCF are optional (the ``openvino`` extra); without them this backend fails with a message
saying what to install.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from bertcompress.compression.quant_config import QuantizationError

log = logging.getLogger(__name__)

# op types NNCF leaves in float in models other than transformers (static students): masked max pooling
# reads -inf at padded positions (a quantizer there spans (-inf, inf)), and with the classifier's MatMul
# quantized after the pooled features, OpenVINO 2026.4's CPU plugin gave every text of a batch the same
# logits (checked on the CNN student: tests/test_openvino.py)
STATIC_IGNORED_TYPES = ("ReduceMax", "ReduceMin", "MatMul")


def _openvino():
    try:
        import openvino as ov
    except ImportError as e:
        raise QuantizationError(
            f"backend 'openvino' is not installed ({e}): pip install -e '.[openvino]' (openvino, nncf)"
        ) from e
    return ov


def quantize_openvino(
    fp32_onnx: str | Path,
    out_dir: str | Path,
    mode: str = "static",
    calibration: Iterable[dict] | None = None,
    transformer: bool = True,
    inference_precision: str = "f32",
) -> dict:
    """Convert ``fp32_onnx`` to OpenVINO IR in ``out_dir`` (``model.xml``, ``model.bin``), int8 with NNCF when
    ``mode == 'static'``.

    Args:
        mode: ``static`` (int8 weights and activations, NNCF PTQ on ``calibration``), ``fp32`` (the float
            graph) or ``bf16`` (the float graph, run in bf16).
        calibration: batches with ``input_ids`` / ``attention_mask`` tensors (B, T), for ``static``.
        transformer: NNCF's ``ModelType.TRANSFORMER`` (keeps softmax, layer norm and the attention's
            first matmul input in float, as NNCF recommends for transformers).
        inference_precision: the float ops' precision at run time (``f32``, ``bf16``, ``auto``), recorded
            for the loader; ``bf16`` mode implies ``bf16``.

    Returns:
        A report: mode, backend, NNCF settings, the counts of FakeQuantize nodes and the IR file names.

    Raises:
        QuantizationError: OpenVINO/NNCF missing, or ``static`` without calibration batches.
    """
    ov = _openvino()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = ov.convert_model(str(fp32_onnx))
    report: dict = {"mode": mode, "backend": "openvino", "openvino_version": ov.get_version()}
    if mode == "static":
        try:
            import nncf
        except ImportError as e:
            raise QuantizationError(f"backend 'openvino' int8 needs NNCF ({e}): pip install -e '.[openvino]'") from e
        if calibration is None:
            raise QuantizationError("backend 'openvino' mode=static needs calibration batches")
        feeds = [{k: b[k].numpy() for k in ("input_ids", "attention_mask")} for b in calibration]
        model = nncf.quantize(
            model,
            nncf.Dataset(feeds),
            subset_size=len(feeds),  # items of the dataset: calibration batches
            model_type=nncf.ModelType.TRANSFORMER if transformer else None,
            ignored_scope=nncf.IgnoredScope(types=[] if transformer else list(STATIC_IGNORED_TYPES), validate=False),
        )
        report.update(nncf_version=nncf.__version__, calibration_batches=len(feeds), model_type=(
            "transformer" if transformer else "default"), ignored_types=[] if transformer else list(STATIC_IGNORED_TYPES))  # fmt: skip
    precision = "bf16" if mode == "bf16" else inference_precision
    xml = out_dir / "model.xml"
    ov.save_model(model, str(xml), compress_to_fp16=False)
    ops: dict[str, int] = {}
    for op in model.get_ordered_ops():
        ops[op.get_type_name()] = ops.get(op.get_type_name(), 0) + 1
    report.update(
        inference_precision=precision,
        fake_quantize_nodes=ops.get("FakeQuantize", 0),
        files=["model.xml", "model.bin"],
    )
    return report
