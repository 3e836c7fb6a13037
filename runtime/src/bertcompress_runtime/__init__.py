"""Classify text with a bertcompress artifact without torch: ``load(dir) -> Predictor``.

Needs only onnxruntime, tokenizers (``tokenizer.json``) and numpy; reads ONNX artifacts and the
TF-IDF floor. Artifacts in the ``hf`` / ``torch`` formats need the training package (``bertcompress``).
"""

from bertcompress_runtime.manifest import ArtifactError, read_manifest
from bertcompress_runtime.predictor import Predictor, load

__all__ = ["ArtifactError", "Predictor", "load", "read_manifest"]
