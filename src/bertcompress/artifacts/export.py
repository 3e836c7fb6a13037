"""Export any artifact to one that :mod:`bertcompress_runtime` runs without torch: ``hf`` and fp32 or
pruned ``torch`` artifacts become ONNX (optionally int8 in ONNX Runtime), ``onnx`` artifacts are copied,
and the TF-IDF floor (JSON + npz) is copied as it is.

The exported graph is checked against the torch module on the export's example texts (max |Δ logit|,
reported), so a graph that computes something else is never written silently.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from bertcompress.artifacts.load import load_artifact, read_manifest
from bertcompress.compression.artifact import save_artifact
from bertcompress.compression.quant_onnx import export_onnx, quantize_onnx
from bertcompress.utils.io import atomic_dir

# texts the exported graph is traced and checked on (any script: the tokenizer handles them)
EXAMPLES = ["আমি আজ খুব খুশি", "this is a short example text", "আমার মন খারাপ, কিছুই ভালো লাগছে না", "ok"]
TOLERANCE = 1e-3  # max |Δ logit| allowed between the fp32 graph and the torch module


def _torch_quantized(module: torch.nn.Module) -> bool:
    for m in module.modules():
        if "quantized" in type(m).__module__:
            return True
        w = getattr(m, "weight", None)
        if isinstance(w, torch.Tensor) and type(w) not in (torch.Tensor, torch.nn.Parameter):
            return True
    return False


def export_artifact(src: str | Path, out: str | Path, int8: bool = False, per_channel: bool = False) -> dict:
    """Write ``out``: an artifact the torch-free runtime loads.

    Args:
        src: any artifact dir.
        int8: quantize the exported graph with ONNX Runtime's dynamic int8 (MatMul, Gemm and the
            embedding Gather; https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html).
        per_channel: one weight scale per output channel (int8 only).

    Returns:
        A report: source and target formats, ``max_abs_logit_diff`` of the fp32 graph against torch.

    Raises:
        ValueError: a model quantized in torch (its int8 kernels do not export: export the fp32 artifact
            with ``int8=True``), a sequence labeler, or an fp32 graph that disagrees with torch.
    """
    src, out = Path(src), Path(out)
    manifest = read_manifest(src)
    fmt = manifest["format"]
    if fmt in {"onnx", "sklearn"}:
        if fmt == "sklearn" and manifest.get("params", {}).get("analyzer") == "subword":
            raise ValueError(
                f"{src}: a subword TF-IDF model needs its HF tokenizer: the runtime has no subword analyzer"
            )
        with atomic_dir(out) as tmp:
            shutil.copytree(src, tmp, dirs_exist_ok=True)
        return {"from": fmt, "to": fmt, "copied": True}
    if manifest.get("task", "classification") != "classification":
        raise ValueError(f"{src}: task {manifest.get('task')!r}: the runtime classifies whole texts only")
    predictor = load_artifact(src)
    module = predictor.module.eval()
    if _torch_quantized(module):
        raise ValueError(
            f"{src}: this model was quantized in torch ({manifest.get('compression', {}).get('name')}); its int8 "
            "kernels do not export to ONNX. Export the fp32 artifact with --int8 (ONNX Runtime's int8), or "
            "train with compression=quant_onnx"
        )
    example = predictor.batches(EXAMPLES, batch_size=len(EXAMPLES))[0]
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(module, Path(tmp) / "fp32.onnx", example)
        from bertcompress_runtime.predictor import onnx_session

        feeds = {k: example[k].numpy() for k in ("input_ids", "attention_mask")}
        with torch.inference_mode():
            expected = module(example).float().numpy()
        diff = float(np.abs(onnx_session(fp32).run(["logits"], feeds)[0] - expected).max())
        if diff > TOLERANCE:
            raise ValueError(f"{src}: the exported graph differs from the torch module by {diff:.2e} in a logit")
        report = {"from": fmt, "to": "onnx", "max_abs_logit_diff": diff, "int8": bool(int8)}
        onnx_file = fp32
        if int8:
            onnx_file = Path(tmp) / "int8.onnx"
            report["quantization"] = quantize_onnx(fp32, onnx_file, "dynamic", True, None, "minmax", per_channel)
        extra = {k: v for k, v in manifest.items() if k in {"compression", "model_name", "structure"}}
        save_artifact(
            out,
            "onnx",
            tokenizer=predictor.encoder.tokenizer,
            label_names=predictor.label_names,
            max_length=manifest["max_length"],
            normalizer=manifest.get("text_normalizer"),
            onnx_file=onnx_file,
            extra={**extra, "exported_from": {"path": str(src), "format": fmt}, "export": report},
        )
    return report
