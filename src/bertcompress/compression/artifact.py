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

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bertcompress.data.datamodule import PadCollator, TextEncoder
from bertcompress.data.normalize import get_text_normalizer
from bertcompress.models.students import HFStudent
from bertcompress.utils.io import atomic_dir, atomic_write_json

MANIFEST = "manifest.json"
SKELETON = "skeleton.pt"
WEIGHT_FILES = {"hf": "model.safetensors", "torch": "model.pt", "onnx": "model.onnx"}
HOW_TO_LOAD = {
    "hf": "AutoModelForSequenceClassification.from_pretrained(dir) (task ner: AutoModelForTokenClassification); "
    "AutoTokenizer.from_pretrained(dir)",
    "torch": "bertcompress.compression.artifact.load_artifact(dir) (torch.load(dir/'model.pt', weights_only=False))",
    "onnx": "onnxruntime.InferenceSession(dir/'model.onnx') with input_ids and attention_mask (int64)",
}


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


@dataclass
class Predictor:
    """A loaded artifact: tokenizes with its own tokenizer and runs its model on CPU.

    ``logits(batch)``: batch dict of (B, T) int64 tensors -> (B, C) float32 numpy ((B, T, C) for a
    sequence labeler, ``task == "ner"``, whose texts are word lists). For a text model (``sklearn``
    format: TF-IDF + LR) a batch is a list of B strings, since vectorizing is its model.
    """

    path: Path
    manifest: dict
    encoder: TextEncoder | None
    module: nn.Module | None = None
    session: object | None = None
    text_model: object | None = None

    @property
    def label_names(self) -> list[str]:
        return self.manifest["label_names"]

    @property
    def task(self) -> str:
        return self.manifest.get("task", "classification")

    @property
    def weights_file(self) -> Path:
        return self.path / self.manifest["weights"]

    def logits(self, batch: dict | list[str]) -> np.ndarray:
        if self.text_model is not None:
            return self.text_model.logits(batch)
        if self.session is not None:
            feeds = {"input_ids": batch["input_ids"].numpy(), "attention_mask": batch["attention_mask"].numpy()}
            return self.session.run(["logits"], feeds)[0]
        with torch.inference_mode():
            return self.module(batch).float().numpy()

    def batches(self, texts: Sequence[str], batch_size: int = 64) -> list[dict]:
        """Tokenize once and pad per batch (dynamic padding): the inputs of timed runs."""
        if self.text_model is not None:
            return [list(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
        ids = self.encoder(list(texts))
        collate = PadCollator(self.encoder.tokenizer)
        out = []
        for i in range(0, len(ids), batch_size):
            b = collate([{"input_ids": x} for x in ids[i : i + batch_size]])
            out.append({"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]})
        return out

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """(N, C) class probabilities."""
        logits = (
            np.concatenate([self.logits(b) for b in self.batches(texts, batch_size)])
            if texts
            else np.zeros((0, len(self.label_names)))
        )
        e = np.exp(logits - logits.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    def predict_labels(self, texts: Sequence, batch_size: int = 64) -> list:
        """Predicted label ids: one per text (N,), or for ``task == "ner"`` one per word of each word list
        (words cut off by ``max_length`` are tagged ``O``)."""
        if self.task != "ner":
            return self.predict_proba(texts, batch_size).argmax(-1).tolist() if len(texts) else []
        from bertcompress.data.conll import TokenPadCollator, word_predictions

        names = self.label_names
        fill = names.index("O") if "O" in names else 0
        ids, markers = self.encoder.encode(list(texts))
        collate = TokenPadCollator(self.encoder.tokenizer)
        out = []
        for i in range(0, len(ids), batch_size):
            b = collate(
                [
                    {"input_ids": x, "labels": m}
                    for x, m in zip(ids[i : i + batch_size], markers[i : i + batch_size], strict=True)
                ]
            )
            logits = self.logits({"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]})
            out += word_predictions(
                b["labels"].tolist(), logits.argmax(-1).tolist(), [len(t) for t in texts[i : i + batch_size]], fill
            )
        return out


def hf_predictor(
    model_dir: str | Path,
    label_names: Sequence[str],
    max_length: int,
    normalizer: str | None = None,
    task: str = "classification",
) -> Predictor:
    """A :class:`Predictor` for a plain HF dir (e.g. the cached fp32 teacher, the benchmark's reference)."""
    from transformers import AutoTokenizer

    from bertcompress.models.classifier import auto_model_class

    path = Path(model_dir)
    manifest = {
        "format": "hf",
        "task": task,
        "weights": WEIGHT_FILES["hf"],
        "label_names": list(label_names),
        "max_length": max_length,
        "text_normalizer": normalizer,
    }
    encoder = _encoder(task, AutoTokenizer.from_pretrained(path), max_length, normalizer)
    module = HFStudent(auto_model_class(task).from_pretrained(path).eval())
    return Predictor(path, manifest, encoder, module=module)


def _encoder(task: str, tokenizer, max_length: int, normalizer: str | None) -> TextEncoder:
    if task == "ner":
        from bertcompress.data.conll import TokenEncoder

        return TokenEncoder(tokenizer, max_length, get_text_normalizer(normalizer))
    return TextEncoder(tokenizer, max_length, get_text_normalizer(normalizer))


class ArtifactError(ValueError):
    """A damaged or incomplete artifact: the message names the file, what is wrong and what to do."""


_REDO = "re-export it (re-run the job that wrote it: its results.json has the config), or copy it again whole"
_MANIFEST_KEYS = ("format", "label_names")


def read_manifest(path: Path) -> dict:
    """``path/manifest.json``, checked: valid JSON, an object with ``format`` and ``label_names``, and the
    weight file it names present and non-empty.

    Raises:
        FileNotFoundError: the dir has no manifest.json (naming the dir).
        ArtifactError: a manifest that is not valid JSON or lacks keys, or a missing or empty weight file.
    """
    file = path / MANIFEST
    if not file.is_file():
        raise FileNotFoundError(f"{path} is not a bertcompress artifact: it has no {MANIFEST}")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{file}: not valid JSON ({e}); the artifact is damaged: {_REDO}.") from e
    missing = [k for k in _MANIFEST_KEYS if not isinstance(manifest, dict) or k not in manifest]
    if missing:
        raise ArtifactError(f"{file}: the manifest lacks {missing}; the artifact is damaged: {_REDO}.")
    fmt = manifest["format"]
    if fmt not in {*WEIGHT_FILES, "sklearn"}:
        raise ArtifactError(f"{file}: unknown format {fmt!r} (expected one of {[*WEIGHT_FILES, 'sklearn']})")
    weights = path / str(manifest.get("weights") or WEIGHT_FILES.get(fmt, ""))
    if not weights.is_file() or weights.stat().st_size == 0:
        state = "is empty" if weights.is_file() else "is missing"
        raise ArtifactError(f"{weights}: the {fmt} weight file named by {file} {state}: {_REDO}.")
    return manifest


def load_artifact(path: str | Path, threads: int | None = None) -> Predictor:
    """Load any artifact dir written by :func:`save_artifact`.

    Raises:
        FileNotFoundError: when the dir has no manifest.json (naming the dir).
        ArtifactError: a damaged manifest, tokenizer or weight file (naming the file and what to do).
    """
    path = Path(path)
    manifest = read_manifest(path)
    try:
        return _load(path, manifest, threads)
    except ArtifactError:
        raise
    except Exception as e:  # noqa: BLE001  (safetensors, zip, protobuf, json, sklearn: one error that names the file)
        weights = path / str(manifest.get("weights") or WEIGHT_FILES.get(manifest["format"], ""))
        raise ArtifactError(
            f"{path}: the {manifest['format']} artifact could not be loaded ({type(e).__name__}: {e}); a file in it "
            f"(weights: {weights.name}, or the tokenizer files) is damaged or truncated: {_REDO}."
        ) from e


def _load(path: Path, manifest: dict, threads: int | None) -> Predictor:
    from transformers import AutoTokenizer

    if manifest["format"] == "sklearn":
        from bertcompress.models.tfidf import TfidfLR

        return Predictor(path, manifest, None, text_model=TfidfLR.load(path))
    tokenizer = AutoTokenizer.from_pretrained(path)
    task = manifest.get("task", "classification")
    encoder = _encoder(task, tokenizer, manifest["max_length"], manifest.get("text_normalizer"))
    fmt = manifest["format"]
    if fmt == "hf":
        from bertcompress.models.classifier import auto_model_class

        module = HFStudent(auto_model_class(task).from_pretrained(path).eval())
        return Predictor(path, manifest, encoder, module=module)
    if fmt == "torch":
        import bertcompress.models.students  # noqa: F401  (classes the pickle refers to)

        weights = torch.load(path / WEIGHT_FILES["torch"], map_location="cpu", weights_only=False)
        if (path / SKELETON).is_file():
            module = torch.load(path / SKELETON, weights_only=False)
            module.load_state_dict(weights, assign=True)
        else:
            module = weights
        module = module.eval()
        return Predictor(path, manifest, encoder, module=module)
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # no busy-waiting worker threads after each run: they would steal the cores from whatever runs
    # next (the interleaved reference in the benchmark) and skew the comparison
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path / WEIGHT_FILES["onnx"]), opts, providers=["CPUExecutionProvider"])
    return Predictor(path, manifest, encoder, session=session)
