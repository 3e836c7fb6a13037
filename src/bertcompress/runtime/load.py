"""Load any artifact dir (``hf``, ``torch``, ``onnx``, ``sklearn``) into a :class:`Predictor`, with one
:class:`ArtifactError` that names the damaged file and what to do."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from bertcompress.data.encoding import TextEncoder
from bertcompress.data.normalize import get_text_normalizer
from bertcompress.runtime.predictor import Predictor
from bertcompress.utils.manifest import MANIFEST, SKELETON, WEIGHT_FILES


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
    from bertcompress.models.students import HFStudent

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
        from bertcompress.models.students import HFStudent

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
