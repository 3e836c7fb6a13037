"""PTQ in ONNX Runtime: export with ``torch.onnx.export(dynamo=False)``, then ``quantize_dynamic`` or
``quantize_static`` with calibration batches
(https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html); the embedding ``Gather`` can be
quantized too."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bertcompress.compression.quant_config import OBSERVERS, QuantizationError

log = logging.getLogger(__name__)


class _OnnxWrapper(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model({"input_ids": input_ids, "attention_mask": attention_mask})


def export_onnx(model: nn.Module, path: str | Path, example: dict, opset: int = 17) -> Path:
    """Export ``model`` (batch -> logits) with dynamic batch and sequence axes (``dynamo=False``).

    Raises:
        QuantizationError: when onnx/onnxruntime are missing or the export fails.
    """
    try:
        import onnx  # noqa: F401
    except ImportError as e:
        raise QuantizationError("backend 'onnxruntime' needs the onnx package: pip install onnx onnxruntime") from e
    path = Path(path)
    wrapper = _OnnxWrapper(model.eval()).eval()
    args = (example["input_ids"][:2], example["attention_mask"][:2])
    with torch.no_grad():
        per_token = wrapper(*args).dim() == 3  # sequence labeling: logits (B, T, C)
        torch.onnx.export(
            wrapper,
            args,
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "seq"},
                "attention_mask": {0: "batch", 1: "seq"},
                "logits": {0: "batch", 1: "seq"} if per_token else {0: "batch"},
            },
            opset_version=opset,
            dynamo=False,
        )
    return path


class _CalibrationReader:
    """Calibration batches for ONNX Runtime. With ``same_length`` they are right-padded to one sequence
    length: the histogram observers (percentile, entropy) stack every batch's activations and fail on batches
    of different lengths (batches are padded to their own longest text). The padding is masked out and uses
    the batches' own pad id (0 when no batch has padding). minmax takes the batches as they are."""

    def __init__(self, batches: Iterable[dict], same_length: bool = True):
        feeds = [{"input_ids": b["input_ids"].numpy(), "attention_mask": b["attention_mask"].numpy()} for b in batches]
        if same_length and feeds:
            length = max(f["input_ids"].shape[1] for f in feeds)
            pads = (f["input_ids"][f["attention_mask"] == 0] for f in feeds)
            pad_id = next((int(p[0]) for p in pads if p.size), 0)
            for f in feeds:
                extra = ((0, 0), (0, length - f["input_ids"].shape[1]))
                f["input_ids"] = np.pad(f["input_ids"], extra, constant_values=pad_id)
                f["attention_mask"] = np.pad(f["attention_mask"], extra, constant_values=0)
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)


def quantize_onnx(
    fp32_path: str | Path,
    int8_path: str | Path,
    mode: str = "dynamic",
    quantize_embeddings: bool = True,
    calibration: Iterable[dict] | None = None,
    observer: str = "minmax",
    per_channel: bool = False,
    nodes_to_exclude: list[str] | None = None,
    nodes_to_quantize: list[str] | None = None,
    op_types: list[str] | None = None,
) -> dict:
    """ONNX Runtime int8 PTQ of an exported model.

    Args:
        quantize_embeddings: also quantize ``Gather`` (the embedding tables).
        op_types: the op types to quantize (None: MatMul, Gemm and Attention, plus the embedding ops with
            ``quantize_embeddings``); ``["Gather"]`` alone stores the embedding tables in int8 weight-only.
        calibration: batches (``input_ids``/``attention_mask`` tensors) for ``static`` mode.
        nodes_to_exclude: node names kept in fp32 (the per-layer fallback of ``compression=auto``).
        nodes_to_quantize: quantize only these nodes (None: every node of the op types).

    Returns:
        A report with the op types quantized and the node counts of the int8 graph.
    """
    try:
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_dynamic,
            quantize_static,
        )
    except ImportError as e:
        raise QuantizationError(f"backend 'onnxruntime' is not installed ({e}): pip install onnxruntime") from e
    # Attention / EmbedLayerNormalization: the fused ops of a fused graph (absent otherwise)
    if op_types:
        ops = list(op_types)
    else:
        ops = ["MatMul", "Gemm", "Attention"] + (["Gather", "EmbedLayerNormalization"] if quantize_embeddings else [])
    if mode == "dynamic":
        quantize_dynamic(
            str(fp32_path),
            str(int8_path),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=ops,
            per_channel=per_channel,
            nodes_to_exclude=list(nodes_to_exclude) if nodes_to_exclude else None,
            nodes_to_quantize=list(nodes_to_quantize) if nodes_to_quantize else None,
            # the fused com.microsoft ops have no ONNX shape inference: their outputs are float
            extra_options={"DefaultTensorType": 1},
        )
    elif mode == "static":
        if calibration is None:
            raise ValueError("static quantization needs calibration batches")
        quantize_static(
            str(fp32_path),
            str(int8_path),
            _CalibrationReader(calibration, same_length=observer != "minmax"),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=ops,
            per_channel=per_channel,
            nodes_to_exclude=list(nodes_to_exclude) if nodes_to_exclude else None,
            nodes_to_quantize=list(nodes_to_quantize) if nodes_to_quantize else None,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, OBSERVERS[observer]),
        )
    else:
        raise QuantizationError(f"backend 'onnxruntime' does not do mode {mode!r} here")
    return {
        "mode": mode,
        "backend": "onnxruntime",
        "op_types_to_quantize": ops,
        "quantize_embeddings": quantize_embeddings,
        **({"nodes_to_exclude": list(nodes_to_exclude)} if nodes_to_exclude else {}),
        **onnx_graph_report(int8_path),
    }


def onnx_graph_report(path: str | Path) -> dict:
    """Count quantized vs float nodes and initializer bytes of an ONNX graph."""
    import onnx

    model = onnx.load(str(path))
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    int8_bytes = float_bytes = 0
    for init in model.graph.initializer:
        n = 1
        for d in init.dims:
            n *= d
        if init.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8):
            int8_bytes += n
        elif init.data_type == onnx.TensorProto.FLOAT:
            float_bytes += 4 * n
    quantized_ops = {k: v for k, v in ops.items() if "Integer" in k or "Quant" in k or k.startswith("QLinear")}
    return {
        "quantized_ops": quantized_ops,
        "int8_initializer_mb": int8_bytes / 1e6,
        "float_initializer_mb": float_bytes / 1e6,
    }


FUSABLE = ("bert", "bert_mean_pool")  # model types ORT's BERT fuser recognises (multilingual-e5 is a BERT)


def export_fused(module: nn.Module, path: str | Path, example: dict) -> tuple[Path, dict]:
    """Export an HF BERT wrapped in ``module`` (``module.model``) with eager attention and fuse the graph with
    ONNX Runtime's transformer optimizer (model type bert: EmbedLayerNormalization, Attention,
    SkipLayerNormalization, BiasGelu; what Optimum's O2 level asks of it,
    https://onnxruntime.ai/docs/performance/transformers-optimization.html), then check that the fused graph
    computes the same logits as the unfused one on ``example``.

    transformers' default (sdpa) attention masking exports as a pattern the fuser does not match; eager
    attention exports the one it does.

    Returns:
        ``(fused path, report)``; the report has the fused operator counts and ``max_abs_logit_diff``.

    Raises:
        QuantizationError: a model type the fuser does not know, or a fused graph that disagrees
            (|Δ logit| > 1e-3) with the unfused one.
    """
    import numpy as np
    import onnxruntime as ort
    from onnxruntime.transformers.optimizer import optimize_model

    hf = getattr(module, "model", None)
    config = getattr(hf, "config", None)
    if config is None or config.model_type not in FUSABLE:
        kind = getattr(config, "model_type", type(module).__name__)
        raise QuantizationError(
            f"graph fusion (compression.quantization.fuse) knows BERT encoders {FUSABLE}, not {kind}"
        )
    path = Path(path)
    previous = config._attn_implementation
    hf.set_attn_implementation("eager")
    try:
        plain = export_onnx(module, path.with_name(path.stem + "_eager.onnx"), example)
    finally:
        hf.set_attn_implementation(previous)
    fused = optimize_model(
        str(plain), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size, opt_level=0
    )
    fused.save_model_to_file(str(path))
    feeds = {k: example[k][:4].numpy() for k in ("input_ids", "attention_mask")}
    run = [
        ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(["logits"], feeds)[0]
        for p in (plain, path)
    ]
    diff = float(np.abs(run[0] - run[1]).max())
    if diff > 1e-3:
        raise QuantizationError(
            f"the fused graph differs from the unfused one by {diff:.2e} in a logit; set fuse=false"
        )
    stats = {k: v for k, v in fused.get_fused_operator_statistics().items() if v}
    return path, {"fused_ops": stats, "max_abs_logit_diff": diff, "source": "onnxruntime.transformers.optimizer"}
