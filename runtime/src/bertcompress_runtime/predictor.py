"""A loaded artifact without torch: :func:`load` gives a :class:`Predictor` over an ONNX Runtime session
(with the artifact's tokenizer) or the numpy TF-IDF floor."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bertcompress_runtime.encode import Encoder
from bertcompress_runtime.manifest import (
    OPENVINO_XML,
    REDO,
    WEIGHT_FILES,
    ArtifactError,
    artifact_file,
    read_manifest,
)


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

    @property
    def execution(self) -> dict:
        """What runs the model: ``backend`` (onnxruntime, openvino, numpy, torch), ``precision`` of its float
        ops as the backend runs them (OpenVINO: read back from the compiled model, bf16 on AMX under ``auto``)
        and the ``quantization`` mode the artifact was written with (None: float)."""
        quant = quantization_mode(self.manifest)
        if self.text_model is not None:
            return {"backend": "numpy", "precision": "f64", "quantization": None}
        if isinstance(self.session, OpenVINOSession):
            return {"backend": "openvino", "precision": self.session.precision, "quantization": quant}
        return {"backend": "onnxruntime", "precision": "f32", "quantization": quant}

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


def quantization_mode(manifest: dict) -> str | None:
    """The PTQ mode an artifact was written with (``compression=auto``: its chosen candidate's; ``qat`` for a
    QAT graph), None: float."""
    applied = (manifest.get("compression_applied") or {}).get("settings")
    node = applied if applied is not None else (manifest.get("compression") or {}).get("quantization") or {}
    if not isinstance(node, dict):
        return None
    return node.get("mode") or ("qat" if str(node.get("_target_", "")).endswith("QuantizationAwareTraining") else None)


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


PRECISIONS = ("f32", "bf16", "auto")  # OpenVINO's INFERENCE_PRECISION_HINT (auto: the plugin's default)


class OpenVINOSession:
    """An OpenVINO CPU model with ONNX Runtime's ``run(output_names, feeds)`` call, so that a :class:`Predictor`
    runs either (https://docs.openvino.ai/2026/openvino-workflow/running-inference.html).

    Args:
        xml / weights: the IR graph and its weights (``model.xml``, ``model.bin``), checked files of the artifact.
        threads: ``INFERENCE_NUM_THREADS`` (None: the plugin's default).
        precision: ``f32``, ``bf16`` or ``auto``: the ``INFERENCE_PRECISION_HINT`` of the non-int8 ops; ``auto``
            leaves the plugin's default, which is bf16 on CPUs with AMX and f32 elsewhere.

    Attributes:
        precision: the precision the plugin actually runs the float ops in (``f32``, ``bf16``), read back
            from the compiled model.

    Raises:
        ImportError: openvino is not installed (``pip install 'bertcompress-runtime[openvino]'``).
        ValueError: an unknown ``precision``.
    """

    def __init__(self, xml: Path, weights: Path, threads: int | None = None, precision: str = "f32"):
        try:
            import openvino as ov
        except ImportError as e:
            raise ImportError(
                f"{xml.parent}: an openvino artifact needs OpenVINO: pip install 'bertcompress-runtime[openvino]' ({e})"
            ) from e
        if precision not in PRECISIONS:
            raise ValueError(f"{xml.parent}: openvino precision {precision!r}: expected one of {PRECISIONS}")
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if precision != "auto":
            config["INFERENCE_PRECISION_HINT"] = precision
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(xml), str(weights)), "CPU", config)
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")  # an ov.Type: f32, bf16
        self.precision = hint.to_string() if hasattr(hint, "to_string") else str(hint)
        self._request = self.compiled.create_infer_request()

    def run(self, output_names, feeds: dict) -> list:
        result = self._request.infer(feeds)
        return [np.asarray(result[self.compiled.output(name)]) for name in output_names]


def session(path: Path, manifest: dict, threads: int | None = None):
    """The inference session of an ``onnx`` or ``openvino`` artifact (``run(output_names, feeds)``)."""
    if manifest["format"] == "openvino":
        xml = artifact_file(path, OPENVINO_XML, "openvino graph")
        weights = artifact_file(path, WEIGHT_FILES["openvino"], "manifest.json: weights")
        precision = str((manifest.get("openvino") or {}).get("inference_precision", "f32"))
        return OpenVINOSession(xml, weights, threads, precision)
    return onnx_session(path / WEIGHT_FILES["onnx"], threads)


def load(path: str | Path, threads: int | None = None) -> Predictor:
    """Load an ``onnx``, ``openvino`` or ``sklearn`` (TF-IDF floor) classification artifact.

    Raises:
        FileNotFoundError: the dir has no manifest.json.
        ArtifactError: a damaged artifact, a pickle (format version 1), or a format that needs torch
            (``hf``, ``torch``: export it with ``bertcompress-export`` in the training install), or a
            sequence labeler (``task: ner``).
        ImportError: an openvino artifact without OpenVINO installed.
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
        return Predictor(path, manifest, encoder, session=session(path, manifest, threads))
    except (ImportError, ValueError):
        raise
    except Exception as e:  # noqa: BLE001  (protobuf, json, npz, tokenizer: one error that names the file)
        raise ArtifactError(
            f"{path}: the {fmt} artifact could not be loaded ({type(e).__name__}: {e}); a file in it is damaged "
            f"or truncated: {REDO}."
        ) from e
