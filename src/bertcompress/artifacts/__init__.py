"""Load and run saved artifacts: ``load_artifact(dir) -> Predictor`` (raw texts in, probabilities out), and
``export_artifact`` to the ONNX artifacts that :mod:`bertcompress_runtime` runs without torch."""

from bertcompress.artifacts.load import ArtifactError, hf_predictor, load_artifact, read_manifest
from bertcompress.artifacts.predictor import Predictor

__all__ = ["ArtifactError", "Predictor", "hf_predictor", "load_artifact", "read_manifest"]
