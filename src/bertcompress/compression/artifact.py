"""Loadable model artifacts: one directory with the weights, the tokenizer and a ``manifest.json``.

Formats (``manifest["format"]``):
- ``hf``: a dense transformer saved with ``save_pretrained`` (loads with plain transformers too);
- ``torch``: an ``nn.Module`` (batch dict -> logits) as ``model.safetensors`` + ``module.json`` (how to
  rebuild it: the static student's builder and sizes or the HF config, and the PTQ applied), for
  torch-quantized and structurally pruned models and the static-embedding students; no pickle
  (:mod:`bertcompress.compression.serialize`);
- ``onnx``: ``model.onnx`` run with ONNX Runtime (inputs ``input_ids``, ``attention_mask``);
- ``openvino``: ``model.xml`` + ``model.bin`` (OpenVINO IR) run with OpenVINO, its float ops in the
  manifest's ``openvino.inference_precision``;
- ``sklearn``: the TF-IDF + LR baseline (:mod:`bertcompress.models.tfidf`), raw text in.

The manifest gives label names, max_length, the text normalizer, the format and how to load it,
plus what compression was applied.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from bertcompress.compression.serialize import write_module
from bertcompress.utils.io import atomic_dir, atomic_write_json
from bertcompress.utils.manifest import FORMAT_VERSION, HOW_TO_LOAD, MANIFEST, OPENVINO_XML, WEIGHT_FILES


def module_spec(module: nn.Module, task: str, structure: dict | None) -> dict:
    """How the loader rebuilds ``module``: a static student's recorded ``build_spec``, or for a wrapped HF
    model (``module.model``) its config (saved beside the weights) and pruned structure.

    Raises:
        ValueError: a module that records neither.
    """
    spec = getattr(module, "build_spec", None)
    if spec is not None:
        return spec
    if getattr(module, "model", None) is not None and hasattr(module.model, "config"):
        return {"builder": "hf", "task": task, "structure": structure}
    raise ValueError(
        f"{type(module).__name__} cannot be saved as a torch artifact: it records no build spec "
        "(static students get one from bertcompress.models.student_builder; HF models are wrapped in HFStudent)"
    )


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
    openvino_dir: str | Path | None = None,
    extra: dict | None = None,
    quantization: dict | None = None,
    structure: dict | None = None,
    task: str = "classification",
) -> Path:
    """Write an artifact dir atomically. Give ``hf_model`` for ``hf``, ``module`` for ``torch``, ``onnx_file`` for
    ``onnx``, ``openvino_dir`` (holding ``model.xml`` and ``model.bin``) for ``openvino``.

    ``quantization`` / ``structure`` (torch format): the PTQ settings applied to ``module`` and the kept
    heads and neurons of a structurally pruned transformer, from which the loader rebuilds it.

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
            spec = module_spec(module, task, structure)
            if spec["builder"] == "hf":
                module.model.config.save_pretrained(tmp)
            write_module(tmp, module, spec, quantization)
        elif fmt == "openvino":
            if openvino_dir is None:
                raise ValueError("format 'openvino' needs openvino_dir")
            for name in (OPENVINO_XML, WEIGHT_FILES["openvino"]):
                shutil.copyfile(Path(openvino_dir) / name, tmp / name)
        else:
            if onnx_file is None:
                raise ValueError("format 'onnx' needs onnx_file")
            shutil.copyfile(onnx_file, tmp / WEIGHT_FILES["onnx"])
        tokenizer.save_pretrained(tmp)
        atomic_write_json(
            tmp / MANIFEST,
            {
                "format": fmt,
                "format_version": FORMAT_VERSION,
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
