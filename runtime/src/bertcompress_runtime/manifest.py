"""The artifact format shared by the writer (``bertcompress.compression.artifact``) and every loader:
file names, format version, and the checked reading of ``manifest.json``.

Format version 2: ``torch`` artifacts are ``model.safetensors`` + ``module.json`` (no pickle), the TF-IDF
floor is JSON + ``.npz``. Version 1 (no ``format_version`` key) pickled both; those are refused, with how
to re-export them. ``hf`` and ``onnx`` artifacts of version 1 hold no pickle and still load.
"""

from __future__ import annotations

import json
from pathlib import Path

MANIFEST = "manifest.json"
FORMAT_VERSION = 2
MODULE_JSON = "module.json"
WEIGHT_FILES = {"hf": "model.safetensors", "torch": "model.safetensors", "onnx": "model.onnx"}
FORMATS = (*WEIGHT_FILES, "sklearn")
# weight files of version-1 artifacts (pickles): never opened
PICKLE_FILES = ("model.pt", "skeleton.pt", "model.pkl")
HOW_TO_LOAD = {
    "hf": "AutoModelForSequenceClassification.from_pretrained(dir) (task ner: AutoModelForTokenClassification); "
    "AutoTokenizer.from_pretrained(dir)",
    "torch": "bertcompress.runtime.load_artifact(dir): module.json rebuilds the module, model.safetensors fills it",
    "onnx": "onnxruntime.InferenceSession(dir/'model.onnx') with input_ids and attention_mask (int64); "
    "or bertcompress_runtime.load(dir), without torch",
}
REDO = "re-export it (re-run the job that wrote it: its results.json has the config), or copy it again whole"


class ArtifactError(ValueError):
    """A damaged, incomplete or unsafe artifact: the message names the file, what is wrong and what to do."""


def read_manifest(path: str | Path) -> dict:
    """``path/manifest.json``, checked: valid JSON, an object with ``format`` and ``label_names``, a known
    format, no pickle weights (:func:`refuse_pickle`), and the weight file it names present and non-empty.

    Raises:
        FileNotFoundError: the dir has no manifest.json (naming the dir).
        ArtifactError: a manifest that is not valid JSON or lacks keys, an unknown format, pickle weights,
            or a missing or empty weight file.
    """
    path = Path(path)
    file = path / MANIFEST
    if not file.is_file():
        raise FileNotFoundError(f"{path} is not a bertcompress artifact: it has no {MANIFEST}")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{file}: not valid JSON ({e}); the artifact is damaged: {REDO}.") from e
    missing = [k for k in ("format", "label_names") if not isinstance(manifest, dict) or k not in manifest]
    if missing:
        raise ArtifactError(f"{file}: the manifest lacks {missing}; the artifact is damaged: {REDO}.")
    fmt = manifest["format"]
    if fmt not in FORMATS:
        raise ArtifactError(f"{file}: unknown format {fmt!r} (expected one of {list(FORMATS)})")
    refuse_pickle(path, manifest)
    weights = path / str(manifest.get("weights") or WEIGHT_FILES.get(fmt, ""))
    if not weights.is_file() or weights.stat().st_size == 0:
        state = "is empty" if weights.is_file() else "is missing"
        raise ArtifactError(f"{weights}: the {fmt} weight file named by {file} {state}: {REDO}.")
    return manifest


def refuse_pickle(path: Path, manifest: dict) -> None:
    """Refuse a version-1 ``torch`` or ``sklearn`` artifact: its weights are a pickle, which can run any
    code when loaded, so it is never opened.

    Raises:
        ArtifactError: naming the pickle file and how to re-export the artifact.
    """
    named = str(manifest.get("weights") or "")
    pickles = [n for n in PICKLE_FILES if (path / n).is_file() or named == n]
    if pickles and manifest["format"] in {"torch", "sklearn"}:
        raise ArtifactError(
            f"{path}: a {manifest['format']} artifact of format version {manifest.get('format_version', 1)} whose "
            f"weights are a pickle ({', '.join(pickles)}); pickles are not loaded, since unpickling can run "
            "any code. Re-export it with this version (re-run the job that wrote it: its results.json has "
            "the config, and cached students are reused), which writes safetensors + JSON."
        )
