"""The artifact format shared by the writer (``bertcompress.compression.artifact``) and every loader:
file names, format version, and the checked reading of ``manifest.json``.

Every file an artifact uses is a regular file inside its own dir (:func:`artifact_file`): the manifest's
paths and the fixed file names are refused when absolute, when they climb out with ``..``, when a symlink
leads out of the dir, when they are devices or FIFOs, and (JSON and vocabulary files) when they are
larger than a stated limit.

Format version 2: ``torch`` artifacts are ``model.safetensors`` + ``module.json`` (no pickle), the TF-IDF
floor is JSON + ``.npz``. Version 1 (no ``format_version`` key) pickled both; those are refused, with how
to re-export them. ``hf`` and ``onnx`` artifacts of version 1 hold no pickle and still load.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path, PurePosixPath

MANIFEST = "manifest.json"
FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)  # the format versions this build reads (1: no ``format_version`` key)
MODULE_JSON = "module.json"
WEIGHT_FILES = {
    "hf": "model.safetensors",
    "torch": "model.safetensors",
    "onnx": "model.onnx",
    "openvino": "model.bin",  # with its graph, OPENVINO_XML
}
OPENVINO_XML = "model.xml"
FORMATS = (*WEIGHT_FILES, "sklearn")
# weight files of version-1 artifacts (pickles): never opened
PICKLE_FILES = ("model.pt", "skeleton.pt", "model.pkl")
HOW_TO_LOAD = {
    "hf": "AutoModelForSequenceClassification.from_pretrained(dir) (task ner: AutoModelForTokenClassification); "
    "AutoTokenizer.from_pretrained(dir)",
    "torch": "bertcompress.artifacts.load_artifact(dir): module.json rebuilds the module, model.safetensors fills it",
    "onnx": "onnxruntime.InferenceSession(dir/'model.onnx') with input_ids and attention_mask (int64); "
    "or bertcompress_runtime.load(dir), without torch",
    "openvino": "openvino.Core().compile_model(read_model(dir/'model.xml', dir/'model.bin'), 'CPU') with input_ids "
    "and attention_mask (int64); or bertcompress_runtime.load(dir) with the runtime's openvino extra",
}
# JSON and text files read whole into memory: larger ones are refused before they are read
MAX_JSON_BYTES = {"manifest.json": 1 << 20, "vocabulary": 512 << 20, "model.xml": 64 << 20}
DEFAULT_MAX_JSON_BYTES = 64 << 20
REDO = "re-export it (re-run the job that wrote it: its results.json has the config), or copy it again whole"


class ArtifactError(ValueError):
    """A damaged, incomplete or unsafe artifact: the message names the file, what is wrong and what to do."""


def artifact_file(
    directory: str | Path, name: str, key: str, max_bytes: int | None = None, missing: str | None = None
) -> Path:
    """``directory/name``, checked to be a regular file inside ``directory``.

    Args:
        name: a relative path as the manifest gives it (``weights``, ``vocabulary``) or a fixed file name.
        key: what names the file, quoted in the error (``manifest.json: weights``).
        max_bytes: the largest size read (JSON and vocabulary files), or None.
        missing: the message when the file is missing (default: one naming ``key``).

    Raises:
        ArtifactError: an absolute path or one with ``..``; a path whose symlinks lead out of the dir; a
            device, FIFO or directory; a missing file; a file over ``max_bytes`` (each naming ``key``).
    """
    directory = Path(directory)
    where = f"{directory}: {key} = {name!r}"
    parts = PurePosixPath(str(name).replace("\\", "/"))
    if not str(name) or parts.is_absolute() or ".." in parts.parts or Path(str(name)).is_absolute():
        raise ArtifactError(f"{where}: an artifact only reads files inside its own dir (no absolute path, no '..')")
    file = directory / str(name)
    target = _contained(directory, str(name), where)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        raise ArtifactError(missing or f"{where}: the file is missing: {REDO}.") from None
    if not stat.S_ISREG(st.st_mode):
        raise ArtifactError(f"{where}: not a regular file (a device, FIFO or dir); an artifact holds plain files")
    if max_bytes is not None and st.st_size > max_bytes:
        raise ArtifactError(
            f"{where}: {st.st_size:,} bytes, over the {max_bytes:,}-byte limit for such a file; the artifact is "
            f"damaged or not one of ours: {REDO}."
        )
    return file


def check_tree(directory: Path) -> None:
    """Every entry under ``directory`` (what a loader may open: tokenizer files, configs, weights) is a
    regular file or dir inside it: a symlink must resolve inside the dir, devices and FIFOs are refused,
    and JSON/text files over their size limit (:data:`MAX_JSON_BYTES`) are refused before anything reads them.

    Raises:
        ArtifactError: as :func:`artifact_file`, naming the entry.
    """
    for dirpath, dirnames, filenames in os.walk(directory):
        for name in [*dirnames, *filenames]:
            rel = (Path(dirpath) / name).relative_to(directory).as_posix()
            limit = MAX_JSON_BYTES.get(rel, DEFAULT_MAX_JSON_BYTES) if name.endswith((".json", ".txt")) else None
            if name in filenames:
                artifact_file(directory, rel, rel, limit)
            elif os.path.islink(Path(dirpath) / name):  # a symlinked dir (os.walk does not follow it)
                _contained(directory, rel, f"{directory}: {rel!r}")


def _contained(directory: Path, rel: str, where: str) -> Path:
    """``directory/rel`` resolved through its symlinks.

    Raises:
        ArtifactError: it leads out of ``directory`` (naming ``where`` and the target).
    """
    root, target = directory.resolve(), (directory / rel).resolve()
    if target != root and root not in target.parents:
        raise ArtifactError(f"{where}: a symlink that leads out of the artifact dir (to {target}); copy the file in")
    return target


def _check_version(file: Path, manifest: dict) -> None:
    version = manifest.get("format_version", 1)
    if isinstance(version, bool) or version not in READ_VERSIONS:
        raise ArtifactError(
            f"{file}: format_version {version!r}; this build reads format versions {list(READ_VERSIONS)}. "
            "An artifact from a newer bertcompress needs that version (pip install -U bertcompress-runtime); "
            f"otherwise it is damaged: {REDO}."
        )


def read_manifest(path: str | Path) -> dict:
    """``path/manifest.json``, checked: valid JSON, an object with ``format`` and ``label_names`` (a list of
    strings), a known format and format version (:data:`READ_VERSIONS`), no pickle weights
    (:func:`refuse_pickle`), the weight file it names the format's own, present and non-empty, and every
    file it names or that a loader opens inside the dir (:func:`artifact_file`).

    Raises:
        FileNotFoundError: the dir has no manifest.json (naming the dir).
        ArtifactError: a manifest that is not valid JSON or lacks keys, an unknown format or version,
            pickle weights, a missing, empty or foreign weight file, or a file outside the dir.
    """
    path = Path(path)
    file = path / MANIFEST
    if not os.path.lexists(file):
        raise FileNotFoundError(f"{path} is not a bertcompress artifact: it has no {MANIFEST}")
    check_tree(path)
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
    _check_version(file, manifest)
    labels = manifest["label_names"]
    if not isinstance(labels, list) or not labels or not all(isinstance(n, str) for n in labels):
        raise ArtifactError(f"{file}: label_names must be a non-empty list of strings, not {labels!r}: {REDO}.")
    refuse_pickle(path, manifest)
    name = str(manifest.get("weights") or WEIGHT_FILES.get(fmt, ""))
    if fmt in WEIGHT_FILES and name != WEIGHT_FILES[fmt]:
        raise ArtifactError(
            f"{file}: weights = {name!r}; a {fmt} artifact's weights are {WEIGHT_FILES[fmt]!r} (only that file is "
            f"loaded, so no other can be measured or trusted): {REDO}."
        )
    missing = f"{path / name}: the {fmt} weight file named by {file} is missing: {REDO}."
    weights = artifact_file(path, name, f"{MANIFEST}: weights", missing=missing)
    if weights.stat().st_size == 0:
        raise ArtifactError(f"{weights}: the {fmt} weight file named by {file} is empty: {REDO}.")
    if fmt == "openvino":
        artifact_file(path, OPENVINO_XML, f"{fmt} graph", MAX_JSON_BYTES[OPENVINO_XML])
    if "vocabulary" in manifest:
        artifact_file(path, str(manifest["vocabulary"]), f"{MANIFEST}: vocabulary", MAX_JSON_BYTES["vocabulary"])
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
