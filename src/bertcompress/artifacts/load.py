"""Load any artifact dir (``hf``, ``torch``, ``onnx``, ``sklearn``) into a :class:`Predictor`, with one
:class:`ArtifactError` that names the damaged file and what to do."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bertcompress.artifacts.predictor import Predictor
from bertcompress.data.encoding import TextEncoder
from bertcompress.data.normalize import get_text_normalizer
from bertcompress.utils.manifest import MODULE_JSON, REDO, WEIGHT_FILES, ArtifactError, read_manifest


def hf_predictor(
    model_dir: str | Path,
    label_names: Sequence[str],
    max_length: int,
    normalizer: str | None = None,
    task: str = "classification",
) -> Predictor:
    """A :class:`Predictor` for a plain HF dir (e.g. the cached fp32 teacher, the benchmark's reference)."""
    from transformers import AutoTokenizer

    from bertcompress.models.students import HFStudent
    from bertcompress.models.tasks import auto_model_class

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
    module = HFStudent(auto_model_class(task).from_pretrained(path, use_safetensors=True).eval())
    return Predictor(path, manifest, encoder, module=module)


def _encoder(task: str, tokenizer, max_length: int, normalizer: str | None) -> TextEncoder:
    if task == "ner":
        from bertcompress.data.conll import TokenEncoder

        return TokenEncoder(tokenizer, max_length, get_text_normalizer(normalizer))
    return TextEncoder(tokenizer, max_length, get_text_normalizer(normalizer))


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
    except (ArtifactError, ImportError):  # ImportError: a backend not installed (openvino), said as such
        raise
    except Exception as e:  # noqa: BLE001  (safetensors, zip, protobuf, json, sklearn: one error that names the file)
        weights = path / str(manifest.get("weights") or WEIGHT_FILES.get(manifest["format"], ""))
        raise ArtifactError(
            f"{path}: the {manifest['format']} artifact could not be loaded ({type(e).__name__}: {e}); a file in it "
            f"(weights: {weights.name}, or the tokenizer files) is damaged or truncated: {REDO}."
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
        from bertcompress.models.students import HFStudent
        from bertcompress.models.tasks import auto_model_class

        module = HFStudent(auto_model_class(task).from_pretrained(path, use_safetensors=True).eval())
        return Predictor(path, manifest, encoder, module=module)
    if fmt == "torch":
        from bertcompress.artifacts.torch_module import load_torch_module

        if not (path / MODULE_JSON).is_file():
            raise ArtifactError(f"{path}: the torch artifact has no {MODULE_JSON} (how to rebuild its module): {REDO}.")
        return Predictor(path, manifest, encoder, module=load_torch_module(path))
    from bertcompress_runtime.predictor import session  # ORT: no busy-waiting threads (they skew interleaving)

    return Predictor(path, manifest, encoder, session=session(path, manifest, threads))
