"""Corpora through Hugging Face ``datasets``: data files (CSV/TSV/JSON/JSONL/Parquet) with ``load_dataset``,
``save_to_disk`` dirs with ``load_from_disk``, and hub datasets by name, each as a pandas frame of objects
for :func:`bertcompress.data.readers.clean_frame`; and tokenization with ``Dataset.map(batched=True)``
cached by content (https://huggingface.co/docs/datasets/about_cache).

Errors keep the readers' messages: the file, the byte offset and line of a bad encoding, the config key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bertcompress.data.readers import DataError, decode_error

log = logging.getLogger(__name__)

# file suffix -> the datasets builder that reads it
BUILDERS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def _quiet() -> None:
    import datasets

    datasets.disable_progress_bars()  # "Generating train split" lines tell a log reader nothing


def _cause(e: BaseException, kind: type) -> BaseException | None:
    """The first exception of type ``kind`` in the chain of ``e`` (datasets wraps the reader's own)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, kind):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def _to_frame(ds) -> pd.DataFrame:
    """A frame of Python objects (str, int, None): pandas' string and NaN conventions left out."""
    df = ds.to_pandas().astype(object)
    return df.where(pd.notna(df), None)


def load_file(
    path: Path,
    *,
    sep: str | None,
    header: bool,
    names: list[str] | None,
    encoding: str,
    header_names: list[str] | None = None,
) -> pd.DataFrame:
    """Read one data file with ``datasets.load_dataset(<builder>, data_files=...)``, every CSV cell a string.

    Args:
        path: a .csv/.tsv/.txt (read as CSV; ``sep`` is the delimiter), .json/.jsonl or .parquet file.
        header / names: whether the first line holds column names; if not, ``names`` names them.
        header_names: the CSV's column names (read from its header), for an all-string schema.

    Raises:
        DataError: a file that does not decode (byte offset and line), cannot be parsed, or is empty.
    """
    import datasets
    from datasets import Features, Value

    _quiet()
    builder = BUILDERS.get(path.suffix.lower(), "csv")
    kwargs: dict = {}
    if builder == "csv":
        import csv

        cols = names if not header else header_names
        kwargs = dict(sep=sep, header=0 if header else None, encoding=encoding, keep_default_na=False, na_values=[""])
        kwargs["quoting"] = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
        if names is not None:
            kwargs["column_names"] = list(names)
        if cols:
            kwargs["features"] = Features({str(c): Value("string") for c in cols})
    with tempfile.TemporaryDirectory(prefix="bertcompress-ds-") as cache:  # read whole, nothing left behind
        try:
            ds = datasets.load_dataset(
                builder, data_files=str(path), split="train", cache_dir=cache, keep_in_memory=True, **kwargs
            )
        except Exception as e:
            if (bad := _cause(e, UnicodeDecodeError)) is not None:
                raise decode_error(path, encoding, bad) from e
            if _cause(e, pd.errors.EmptyDataError) is not None:
                raise DataError(f"{path}: the file is empty; expected a header and labelled rows.") from e
            raise DataError(
                f"{path}: could not parse the file ({type(e).__name__}: {e}). Check the delimiter (data.sep), "
                "the quoting, and that the file is the format its suffix says."
            ) from e
    return _to_frame(ds)


def is_hub_name(path: str) -> bool:
    """``user/name`` or ``name`` with no such file or dir: a dataset on the Hugging Face Hub."""
    return not Path(path).exists() and not Path(path).suffix and path.count("/") <= 1 and not path.startswith(".")


def load_splits(path: str, split_map: dict, config_name: str | None = None, key: str = "data.path") -> dict:
    """The splits of a ``save_to_disk`` dir or a hub dataset, as ``{our split: (frame, their split)}``.

    Args:
        path: a dir written by ``Dataset(Dict).save_to_disk``, or a hub dataset name.
        split_map: ``{"train": "train", "val": "validation", "test": "test"}``: their split names (None: absent).

    Raises:
        DataError: a dir or name that holds no dataset, no train split (listing those found), or a hub
            dataset that cannot be reached (naming it, and ``HF_HUB_OFFLINE`` when set).
    """
    import datasets

    _quiet()
    local = Path(path).is_dir()
    try:
        ds = datasets.load_from_disk(path) if local else datasets.load_dataset(path, config_name)
    except Exception as e:
        offline = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("HF_DATASETS_OFFLINE")
        where = (
            f"{key}={path}: not a save_to_disk dir ({type(e).__name__}: {e})"
            if local
            else f"{key}={path}: the Hub dataset could not be loaded ({type(e).__name__}: {e})"
            + ("; HF_HUB_OFFLINE is set, so only a dataset already in the HF cache loads" if offline else "")
        )
        raise DataError(
            f"{where}. Download it once online (`datasets.load_dataset({path!r}).save_to_disk(dir)`), then "
            f"set {key} to that dir, or to a CSV/JSON/Parquet file."
        ) from e
    if isinstance(ds, datasets.Dataset):
        ds = datasets.DatasetDict({"train": ds})
    out = {}
    for ours, theirs in split_map.items():
        if theirs is None:
            continue
        if theirs not in ds and ours != "train":  # carved from train instead, as with no split given
            log.warning(
                "%s=%s has no split %r (data.split_map.%s): carving %s from train", key, path, theirs, ours, ours
            )
            continue
        if theirs not in ds:
            raise DataError(
                f"{key}={path}: no split {theirs!r} (data.split_map.{ours}); its splits: {list(ds)}. Set "
                f"data.split_map.{ours} to one of them, or null."
            )
        out[ours] = (_to_frame(ds[theirs]), theirs, ds[theirs])
    return out


def encoder_identity(encoder) -> str | None:
    """A content hash of what an encoder does to a text (tokenizer vocabulary and rules, the encoder's class
    and settings such as the truncation length, the normalizer), or None when it cannot be had (a slow
    tokenizer, state with no stable description): then nothing is cached on disk."""
    backend = getattr(encoder.tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    memo = getattr(encoder, "_identity", None)
    if memo is None:
        norm = encoder.normalizer
        name = "" if norm is None else f"{getattr(norm, '__module__', '')}.{getattr(norm, '__qualname__', '')}"
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None), spec.pop("padding", None)  # call-time state: max_length is hashed below
        kind = f"{type(encoder).__module__}.{type(encoder).__qualname__}"
        fields = {f.name: repr(getattr(encoder, f.name)) for f in dataclasses.fields(encoder)}
        fields = {k: v for k, v in fields.items() if k not in ("tokenizer", "normalizer")}
        if any(" at 0x" in v for v in fields.values()):  # state with no stable description: not cached
            return None
        parts = [json.dumps(spec, sort_keys=True), kind, json.dumps(fields, sort_keys=True), name]
        if norm is not None and not hasattr(norm, "__qualname__"):
            return None
        memo = hashlib.sha256("\n".join(parts).encode()).hexdigest()
        object.__setattr__(encoder, "_identity", memo)
    return memo


def encode_dataset(ids: Sequence[int], texts: Sequence[str], labels: Sequence[int], encoder, cache_dir=None):
    """Tokenize with ``Dataset.map(batched=True)``: a ``datasets.Dataset`` of ``id``, ``input_ids`` and
    ``labels`` rows. With ``cache_dir``, the result is written there once per content (ids, texts, labels,
    :func:`encoder_identity`) and memory-mapped from then on; a pool of 35k texts is tokenized once."""
    from datasets import Dataset

    _quiet()
    raw = Dataset.from_dict({"id": list(ids), "text": list(texts), "labels": list(labels)})
    identity = encoder_identity(encoder) if cache_dir is not None else None
    kwargs: dict = {}
    if identity is not None:
        h = hashlib.sha256(identity.encode())
        for part in (ids, labels):
            h.update(repr(list(part)).encode())
        for t in texts:
            h.update(t.encode("utf-8", "surrogatepass") + b"\0")
        key = h.hexdigest()[:32]
        path = Path(cache_dir) / f"tokens-{key}.arrow"
        if path.is_file():  # written whole by an earlier map (datasets writes a temp file, then moves it)
            return Dataset.from_file(str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        kwargs = dict(cache_file_name=str(path), new_fingerprint=key)
    return raw.map(lambda b: {"input_ids": encoder(b["text"])}, batched=True, remove_columns=["text"], **kwargs)


def dataset_unavailable(path: str, config_name: str | None = None) -> str | None:
    """Why the dataset ``path`` (``data=hf``) cannot be had here, or None: a local file or dir is there, or a
    hub dataset's builder loads (online, or from the HF cache with ``HF_HUB_OFFLINE``). The sweep preflight
    asks this of every job, as it asks :func:`bertcompress.models.resolver.model_unavailable` of models."""
    if Path(path).exists():
        return None
    if not is_hub_name(path):
        return f"no such file or dir: {path}"
    import datasets

    try:
        datasets.load_dataset_builder(path, config_name)
    except Exception as e:  # noqa: BLE001  (any failure means: not here)
        offline = " (HF_HUB_OFFLINE is set: only the HF cache is looked in)" if os.environ.get("HF_HUB_OFFLINE") else ""
        return f"not on the Hub nor in the HF cache{offline}: {type(e).__name__}: {str(e)[:200]}"
    return None
