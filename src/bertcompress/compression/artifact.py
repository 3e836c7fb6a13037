"""Loadable model artifacts: one directory with the weights, the tokenizer and a ``manifest.json``.

Formats (``manifest["format"]``):
- ``hf``: a dense transformer saved with ``save_pretrained`` (loads with plain transformers too);
- ``torch``: a pickled ``nn.Module`` (``model.pt``, batch dict -> logits), for quantized models and
  the static-embedding students; loading needs this package and ``torch.load(weights_only=False)``.
  torchao-quantized models cannot be pickled whole: ``model.pt`` then holds the state dict and
  ``skeleton.pt`` the module on the meta device, filled with ``load_state_dict(assign=True)``;
- ``onnx``: ``model.onnx`` run with ONNX Runtime (inputs ``input_ids``, ``attention_mask``);
- ``sklearn``: the TF-IDF + LR baseline (:mod:`bertcompress.models.tfidf`), raw text in.

The manifest gives label names, max_length, the text normalizer, the format and how to load it,
plus what compression was applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from bertcompress.utils.io import atomic_dir, atomic_write_json
from bertcompress.utils.manifest import HOW_TO_LOAD, MANIFEST, SKELETON, WEIGHT_FILES


def meta_skeleton(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose parameters live on the meta device (no storage); buffers stay real,
    since non-persistent ones (e.g. BERT's position_ids) are not in the state dict."""
    import copy

    skeleton = copy.deepcopy(module)
    for sub in skeleton.modules():
        for name, p in list(sub._parameters.items()):
            if p is not None:
                sub._parameters[name] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=False)
    return skeleton


def save_artifact(
    path: str | Path,
    fmt: str,
    tokenizer,
    label_names: Sequence[str],
    max_length: int,
    normalizer: str | None = None,
    module: nn.Module | None = None,
    hf_model=None,
    onnx_file: str | Path | None = None,
    extra: dict | None = None,
    skeleton: nn.Module | None = None,
    task: str = "classification",
) -> Path:
    """Write an artifact dir atomically. Give ``hf_model`` for ``hf``, ``module`` for ``torch``, ``onnx_file`` for ``onnx``.

    ``skeleton`` (torch format): the module's architecture on the meta device; the weights are then
    saved as a state dict (needed for torchao tensor subclasses).

    Raises:
        ValueError: for an unknown format or a missing model for it.
    """
    if fmt not in WEIGHT_FILES:
        raise ValueError(f"artifact format {fmt!r}: expected one of {list(WEIGHT_FILES)}")
    path = Path(path)
    with atomic_dir(path) as tmp:
        if fmt == "hf":
            if hf_model is None:
                raise ValueError("format 'hf' needs hf_model")
            hf_model.save_pretrained(tmp)
        elif fmt == "torch":
            if module is None:
                raise ValueError("format 'torch' needs module")
            if skeleton is not None:
                torch.save(module.state_dict(), tmp / WEIGHT_FILES["torch"])
                torch.save(skeleton, tmp / SKELETON)
            else:
                torch.save(module, tmp / WEIGHT_FILES["torch"])
        else:
            if onnx_file is None:
                raise ValueError("format 'onnx' needs onnx_file")
            import shutil

            shutil.copyfile(onnx_file, tmp / WEIGHT_FILES["onnx"])
        tokenizer.save_pretrained(tmp)
        atomic_write_json(
            tmp / MANIFEST,
            {
                "format": fmt,
                "task": task,
                "weights": WEIGHT_FILES[fmt],
                "label_names": list(label_names),
                "max_length": max_length,
                "text_normalizer": normalizer,
                "tokenizer": ".",
                "how_to_load": HOW_TO_LOAD[fmt],
                **(extra or {}),
            },
        )
    return path
