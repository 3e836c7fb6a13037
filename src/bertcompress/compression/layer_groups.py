"""Layer groups of an exported ONNX graph, the units of ``compression=auto``'s per-layer fallback: the
quantizable nodes grouped by the transformer layer torch's exporter names them after (``layer.3``), the rest
by their module path (embeddings, the classifier, a static student's layers)."""

from __future__ import annotations

import re
from pathlib import Path

# the op types ONNX Runtime's int8 PTQ quantizes here (bertcompress.compression.quant_onnx)
QUANTIZABLE_OPS = ("MatMul", "Gemm", "Attention", "Gather", "EmbedLayerNormalization")
# per-layer fallback probes each group once: a graph with more (no layer names, e.g. fused) is not tried
MAX_GROUPS = 32


def layer_groups(onnx_path: str | Path) -> dict[str, list[str]]:
    """``{group: [node names]}`` of the quantizable nodes (:data:`QUANTIZABLE_OPS`) of the graph at ``onnx_path``:
    ``layer.N`` for the nodes of transformer layer N, else the node's module path (its name less the op)."""
    import onnx

    groups: dict[str, list[str]] = {}
    for node in onnx.load(str(onnx_path), load_external_data=False).graph.node:
        if node.op_type not in QUANTIZABLE_OPS:
            continue
        m = re.search(r"layer[._/]?(\d+)", node.name)
        key = f"layer.{m.group(1)}" if m else node.name.strip("/").rpartition("/")[0] or node.name
        groups.setdefault(key, []).append(node.name)
    return groups
