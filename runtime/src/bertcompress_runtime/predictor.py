"""A loaded artifact without torch: :func:`load` gives a :class:`Predictor` over an ONNX Runtime session
(with the artifact's tokenizer) or the numpy TF-IDF floor."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bertcompress_runtime.encode import Encoder
from bertcompress_runtime.manifest import REDO, WEIGHT_FILES, ArtifactError, artifact_file, read_manifest


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, C) logits."""
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@dataclass
class Predictor:
    """Raw texts in, probabilities out. ``batches(texts, n)`` prepares inputs (padded id arrays, or the
    texts themselves for the TF-IDF model) and ``logits(batch)`` runs one: (B, C) float32."""

    path: Path
    manifest: dict
    encoder: Encoder | None = None
    session: object | None = None
    text_model: object | None = None

    @property
    def label_names(self) -> list[str]:
        return list(self.manifest["label_names"])

    @property
    def task(self) -> str:
        return self.manifest.get("task", "classification")

    @property
    def weights_file(self) -> Path:
        """The weight file (checked to be a regular file inside the artifact dir)."""
        name = str(self.manifest.get("weights") or WEIGHT_FILES[self.manifest["format"]])
        return artifact_file(self.path, name, "manifest.json: weights")

    def batches(self, texts: Sequence[str], batch_size: int = 64) -> list:
        if self.text_model is not None:
            return [list(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
        ids = self.encoder.ids(texts)
        return [self.encoder.pad(ids[i : i + batch_size]) for i in range(0, len(ids), batch_size)]

    def logits(self, batch) -> np.ndarray:
        if self.text_model is not None:
            return self.text_model.logits(batch)
        return self.session.run(["logits"], batch)[0]

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """(N, C) class probabilities."""
        if not len(texts):
            return np.zeros((0, len(self.label_names)))
        logits = np.concatenate([self.logits(b) for b in self.batches(texts, batch_size)])
        check_outputs(self.path, logits.shape[-1], self.label_names)
        return softmax(logits.astype(np.float64))


def check_outputs(path: Path, outputs: int, label_names: Sequence[str]) -> None:
    """The model's class count must match the manifest's ``label_names``.

    Raises:
        ArtifactError: naming both counts and the manifest.
    """
    if outputs != len(label_names):
        raise ArtifactError(
            f"{Path(path) / 'manifest.json'}: label_names has {len(label_names)} names but the model gives {outputs} "
            f"outputs; the manifest does not belong to these weights: {REDO}."
        )


def onnx_session(file: Path, threads: int | None = None):
    """An ONNX Runtime CPU session that does not busy-wait between runs (it would steal the cores from
    whatever runs next), with ``threads`` intra-op threads if given."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(file), opts, providers=["CPUExecutionProvider"])


def load(path: str | Path, threads: int | None = None) -> Predictor:
    """Load an ``onnx`` or ``sklearn`` (TF-IDF floor) classification artifact.

    Raises:
        FileNotFoundError: the dir has no manifest.json.
        ArtifactError: a damaged artifact, a pickle (format version 1), or a format that needs torch
            (``hf``, ``torch``: export it with ``bertcompress-export`` in the training install), or a
            sequence labeler (``task: ner``).
    """
    path = Path(path)
    manifest = read_manifest(path)
    fmt = manifest["format"]
    if fmt in {"hf", "torch"}:
        raise ArtifactError(
            f"{path}: a {fmt} artifact needs torch (the training package, bertcompress); export it to ONNX there "
            f"with `bertcompress-export {path} OUT_DIR [--int8]`, then load OUT_DIR"
        )
    if manifest.get("task", "classification") != "classification":
        raise ArtifactError(f"{path}: task {manifest.get('task')!r}: the runtime classifies whole texts only")
    try:
        if fmt == "sklearn":
            from bertcompress_runtime.tfidf import TfidfModel

            return Predictor(path, manifest, text_model=TfidfModel(path, manifest))
        encoder = Encoder(path, manifest["max_length"], manifest.get("text_normalizer"))
        return Predictor(path, manifest, encoder, session=onnx_session(path / WEIGHT_FILES["onnx"], threads))
    except (ImportError, ValueError):
        raise
    except Exception as e:  # noqa: BLE001  (protobuf, json, npz, tokenizer: one error that names the file)
        raise ArtifactError(
            f"{path}: the {fmt} artifact could not be loaded ({type(e).__name__}: {e}); a file in it is damaged "
            f"or truncated: {REDO}."
        ) from e
