"""What an artifact weighs: size on disk in MB (plain and deflate-compressed, since masked zeros do not
shrink a dense file) and its parameter counts, for every artifact format."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from bertcompress.artifacts import Predictor
from bertcompress.models.params import count_parameters
from bertcompress.utils.manifest import OPENVINO_XML, artifact_file


def file_mb(path: Path) -> float:
    return path.stat().st_size / 1e6


def zipped_mb(path: Path) -> float:
    """Size in MB of ``path`` deflate-compressed in memory (what sparsity buys on disk). Memoised per
    (path, size, mtime) within the process: every job of a sweep re-measures the same 470 MB fp32
    reference, about 20 s of deflate each time."""
    st = os.stat(path)
    return _zipped_mb(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _zipped_mb(path: str, size: int, mtime_ns: int) -> float:
    path = Path(path)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as z:
        z.write(path, arcname=path.name)
    return buf.tell() / 1e6


def artifact_params(predictor: Predictor) -> dict:
    """Parameter counts of a torch artifact, constant element counts of a graph (ONNX initializers, OpenVINO
    constants), or the learned numbers (coefficients + idf weights) of a TF-IDF + LR one."""
    if predictor.text_model is not None:
        return predictor.text_model.num_parameters()
    if predictor.module is not None:
        counts = count_parameters(predictor.module)
        packed = _packed_params(predictor.module)
        if packed:  # torch.ao dynamic-quantized Linear/LSTM weights are not nn.Parameters
            counts = {**counts, "total": counts["total"] + packed, "packed_int8": packed}
        return counts
    total = nonzero = 0
    for arr in _graph_constants(predictor):
        if arr.size > 1:
            total += arr.size
            nonzero += int(np.count_nonzero(arr))
    return {"total": total, "nonzero": nonzero, "embedding": None, "non_embedding": None}


def _graph_constants(predictor: Predictor):
    """The constant arrays of a graph artifact: an ONNX graph's initializers, an OpenVINO IR's Constant ops
    (int8 weights included)."""
    if predictor.manifest.get("format") == "openvino":
        import openvino as ov

        xml = artifact_file(predictor.path, OPENVINO_XML, "openvino graph")
        model = ov.Core().read_model(str(xml), str(predictor.weights_file))
        return (op.get_data() for op in model.get_ordered_ops() if op.get_type_name() == "Constant")
    import onnx
    from onnx import numpy_helper

    return (numpy_helper.to_array(i) for i in onnx.load(str(predictor.weights_file)).graph.initializer)


def _packed_params(module: torch.nn.Module) -> int:
    n = 0
    for m in module.modules():
        if (
            hasattr(m, "weight")
            and callable(getattr(m, "weight", None))
            and type(m).__module__.startswith("torch.ao.nn.quantized")
        ):
            with contextlib.suppress(Exception):  # count what can be counted
                n += m.weight().numel()
    return n
