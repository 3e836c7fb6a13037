"""Rebuild a ``torch``-format artifact's module from ``module.json`` + ``model.safetensors`` (no pickle).

The float module is built from its spec (a static student's builder and sizes, or an HF config), wrapped
where SmoothQuant wrapped it, quantized again with the recorded PTQ settings (which gives the same module
types), and only then filled with the stored tensors (:mod:`bertcompress.compression.serialize`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from bertcompress.compression.serialize import decode_into, read_module_doc, wrap_smoothed
from bertcompress.models.students.registry import get_student


def build_float(spec: dict, directory: Path) -> nn.Module:
    """The float module (random weights) that ``spec`` describes.

    Raises:
        ValueError: an unknown builder or static-student function.
    """
    if spec["builder"] == "static":
        from bertcompress.models.students.static import StaticEmbedding

        build = get_student(spec["function"], key=f"{directory}/module.json spec.function").builder
        e = spec["embedding"]
        embedding = StaticEmbedding(
            torch.zeros(e["num_embeddings"], e["dim"]), dropout=e["dropout"], padding_idx=e["padding_idx"]
        )
        extra = {"per_token": True} if spec.get("per_token") else {}
        return build(embedding=embedding, num_labels=spec["num_labels"], **spec["kwargs"], **extra)
    if spec["builder"] == "hf":
        from transformers import AutoConfig

        from bertcompress.models.students import HFStudent
        from bertcompress.models.tasks import auto_model_class

        model = auto_model_class(spec.get("task", "classification")).from_config(AutoConfig.from_pretrained(directory))
        if spec.get("structure"):
            from bertcompress.compression.structured import resize_to_structure

            model = resize_to_structure(model, spec["structure"])
        return HFStudent(model)
    raise ValueError(f"{directory}: unknown module builder {spec['builder']!r} (expected static or hf)")


def load_torch_module(directory: str | Path) -> nn.Module:
    """The module of a ``torch``-format artifact dir, in eval mode.

    Raises:
        ValueError: a layout or builder this version does not know; KeyError / RuntimeError: stored
            tensors that do not fit the rebuilt module.
    """
    directory = Path(directory)
    doc, tensors = read_module_doc(directory)
    module = build_float(doc["spec"], directory).eval()
    state = doc["state"]
    wrap_smoothed(module, [*tensors, *state.get("entries", {})])
    q = doc.get("quantization")
    if q and state["codec"] == "state_dict":
        from bertcompress.compression.quant_torch import quantize_torch

        module, _ = quantize_torch(
            module, q["mode"], q["backend"], bool(q.get("quantize_embeddings")), bool(q.get("per_channel"))
        )
    return decode_into(module, tensors, state).eval()
