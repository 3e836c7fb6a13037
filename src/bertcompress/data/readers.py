"""Read labelled text tables (CSV, TSV, JSON, Parquet through `datasets`; XLSX) with errors that name the file, row and column.

Row numbers in messages are 0-based data rows (the pandas index; the header is not counted),
the convention of ``../shared/data/*/SOURCE.md``.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)

DATA_DIR_ENV = "BERTCOMPRESS_DATA_DIR"


class DataError(ValueError):
    """Bad input data: the message names the file, the row or column, and what to do."""


@dataclass
class CleaningReport:
    """What :func:`clean_frame` dropped or cast, with the first affected rows."""

    file: str
    n_in: int = 0
    empty_dropped: list[int] = field(default_factory=list)
    non_string_cast: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "file": self.file,
            "rows_in": self.n_in,
            "empty_dropped": len(self.empty_dropped),
            "non_string_cast": len(self.non_string_cast),
        }


def missing_file_error(path: Path, upstream: str | None = None, key: str = "data.path") -> FileNotFoundError:
    """The error for a missing data file; ``key`` is the config key that names the file (``data.train_file``)."""
    msg = (
        f"Data file not found: {path}. Set the env var {DATA_DIR_ENV} to the folder that holds the "
        f"corpora (on the dev machines: ../shared/data), or pass {key}=/abs/path on the command line."
    )
    if upstream:
        msg += f" The corpus can be downloaded from {upstream}."
    return FileNotFoundError(msg)


def read_table(
    path: str | Path,
    *,
    sheet: str | int | None = 0,
    sep: str | None = None,
    header: bool = True,
    column_names: Sequence[str] | None = None,
    upstream: str | None = None,
    encoding: str = "utf-8",
    key: str = "data.path",
) -> pd.DataFrame:
    """Read a CSV/TSV/JSON/Parquet/XLSX file with every CSV cell a string (no type coercion).

    Args:
        path: the file; ``.xlsx``/``.xls`` read with pandas (openpyxl); ``.json``/``.jsonl``/``.parquet``
            and CSV (``.tsv`` tab-separated with quoting off, anything else comma-separated; ``sep``
            overrides the delimiter) with ``datasets.load_dataset`` (:mod:`bertcompress.data.hf_io`).
        sheet: the xlsx sheet name or index.
        header: whether the first line holds column names; if not, ``column_names`` names them.
        upstream: the corpus URL, quoted in the error when the file is missing.
        encoding: the text encoding of a CSV/TSV file (``data.encoding``).
        key: the config key that names this file, quoted in the errors.

    Raises:
        FileNotFoundError: naming the path, ``BERTCOMPRESS_DATA_DIR``, the config key and the upstream URL.
        DataError: when the file is empty, cannot be parsed, or does not decode with ``encoding`` (naming
            the byte offset and line, and suggesting ``data.encoding``).
    """
    path = Path(path)
    if not path.is_file():
        raise missing_file_error(path, upstream, key)
    suffix = path.suffix.lower()
    names = list(column_names) if column_names is not None else None
    if suffix in {".xlsx", ".xls", ".xlsm"}:  # pandas (openpyxl): datasets reads no spreadsheets
        try:
            df = pd.read_excel(path, sheet_name=sheet, dtype=object, header=0 if header else None, names=names)
        except (pd.errors.ParserError, ValueError) as e:
            raise DataError(f"{path}: could not parse the file ({e}). Check the sheet (data.sheet).") from e
        if header:
            check_unique_header(path, suffix, sep, encoding, sheet)
    else:  # CSV/TSV/JSON/Parquet through datasets.load_dataset
        from bertcompress.data.hf_io import BUILDERS, load_file

        if sep is None:
            sep = "\t" if suffix == ".tsv" else ","
        csv_like = BUILDERS.get(suffix, "csv") == "csv"
        if csv_like and path.stat().st_size == 0:
            raise DataError(f"{path}: the file is empty; expected a header and labelled rows.")
        found = check_unique_header(path, suffix, sep, encoding, sheet) if csv_like and header else None
        df = load_file(path, sep=sep, header=header, names=names, encoding=encoding, header_names=found)
    if len(df) == 0:
        raise DataError(f"{path}: the file has no data rows.")
    return df


def check_unique_header(path: Path, suffix: str, sep: str | None, encoding: str, sheet) -> list[str]:
    """The header's column names; raise :class:`DataError` when one occurs twice (a reader would rename the
    second one, ``text.1``, and the first would be read silently) or the header does not decode."""
    if suffix in {".xlsx", ".xls", ".xlsm"}:
        names = [str(c) for c in pd.read_excel(path, sheet_name=sheet, header=None, nrows=1, dtype=object).iloc[0]]
    else:
        try:
            with open(path, encoding=encoding, newline="") as f:
                quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
                names = next(csv.reader(f, delimiter=sep, quoting=quoting), [])
        except UnicodeDecodeError as e:
            raise decode_error(path, encoding, e) from e
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(
            f"{path}: the header names column(s) {dupes} more than once ({names}); rename them so that each "
            "column has one name, then set data.text_column / data.label_column."
        )
    return names


def decode_error(path: Path, encoding: str, e: UnicodeDecodeError) -> DataError:
    """A :class:`DataError` for a file that does not decode: the byte offset, the 1-based line and the bytes."""
    raw = path.read_bytes()
    try:  # pandas reads in chunks, so e.start is chunk-relative: decode the whole file for the byte offset
        raw.decode(encoding)
        offset = e.start
    except UnicodeDecodeError as whole:
        offset = whole.start
    line = raw[:offset].count(b"\n") + 1
    bad = raw[offset : offset + 4]
    utf8 = encoding.replace("-", "").lower() == "utf8"
    guess = "data.encoding=cp1252 (a Windows export) or data.encoding=latin-1" if utf8 else "data.encoding=utf-8"
    return DataError(
        f"{path}: byte {offset} (line {line}, data row {line - 2} under a header) is {bad!r}, which is not valid "
        f"{encoding}. Save the file as UTF-8, or give its encoding, e.g. {guess}."
    )


def infer_labels(frames: Sequence[tuple[str | Path, pd.DataFrame]]) -> list[str]:
    """The label set of ``frames`` (file, frame with ``label`` and ``row``), sorted, with counts logged.

    Raises:
        DataError: a label with fewer than 2 examples (naming it, its file rows and ``data.labels``), or
            labels that differ only by case (``Joy`` and ``joy``), which would become separate classes.
    """
    counts: dict[str, int] = {}
    rows: dict[str, list[str]] = {}
    for path, df in frames:
        for label, row in zip(df["label"], df["row"], strict=True):
            counts[label] = counts.get(label, 0) + 1
            rows.setdefault(label, []).append(f"{path} row {row}")
    by_case: dict[str, list[str]] = {}
    for label in counts:
        by_case.setdefault(label.casefold(), []).append(label)
    clashes = [sorted(v) for v in by_case.values() if len(v) > 1]
    if clashes:
        detail = "; ".join(", ".join(f"{lab!r} ({counts[lab]}x)" for lab in group) for group in clashes)
        raise DataError(
            f"labels that differ only by case would become separate classes: {detail}. Fix the file, or set "
            f"data.labels to the intended label set."
        )
    rare = sorted(label for label, n in counts.items() if n < 2)
    if rare:
        detail = "; ".join(f"{lab!r} at {', '.join(rows[lab])}" for lab in rare)
        raise DataError(
            f"label(s) with fewer than 2 examples cannot be split into train/val/test: {detail}. A typo? Fix the "
            f"file, or set data.labels to the label set (rows with other labels are then reported)."
        )
    labels = sorted(counts)
    log.info("inferred %d labels (data.labels unset): %s", len(labels), {lab: counts[lab] for lab in labels})
    return labels


def check_columns(df: pd.DataFrame, path: str | Path, required: Sequence[str]) -> None:
    """Raise :class:`DataError` listing the columns found when any of ``required`` is missing."""
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}. Columns found: {[str(c) for c in df.columns]}. "
            f"Set data.text_column / data.label_column to the right names."
        )


def clean_frame(
    df: pd.DataFrame,
    path: str | Path,
    text_column: str,
    label_column: str,
    labels: Sequence[str] | None,
) -> tuple[pd.DataFrame, CleaningReport]:
    """Return a frame with columns ``text`` (str), ``label`` (str) and ``row`` (original 0-based row).

    - empty cells (NaN or blank text/label) are dropped, counted and warned about;
    - non-string cells (e.g. a text cell holding the integer 1) are cast to ``str``, counted and warned about;
    - labels are stripped of surrounding whitespace.

    Raises:
        DataError: for missing columns (listing those found) or labels outside ``labels``
            (listing the unknown labels and their first rows).
    """
    check_columns(df, path, [text_column, label_column])
    report = CleaningReport(file=str(path), n_in=len(df))
    out = pd.DataFrame({"text": df[text_column], "label": df[label_column], "row": df.index.astype(int)})

    def _is_empty(v) -> bool:
        return v is None or (isinstance(v, float) and pd.isna(v)) or (isinstance(v, str) and not v.strip())

    empty = out["text"].map(_is_empty) | out["label"].map(_is_empty)
    report.empty_dropped = out.loc[empty, "row"].tolist()
    out = out.loc[~empty]
    if len(out) == 0:
        raise DataError(
            f"{path}: all {report.n_in} rows have an empty {text_column!r} or {label_column!r} cell; fill them, or "
            "point data.text_column / data.label_column at the right columns."
        )
    non_str = ~out["text"].map(lambda v: isinstance(v, str))
    report.non_string_cast = out.loc[non_str, "row"].tolist()
    out = out.assign(text=out["text"].map(str), label=out["label"].map(lambda v: str(v).strip()))
    if report.empty_dropped:
        log.warning(
            "%s: dropped %d row(s) with an empty text or label cell (first rows: %s)",
            path,
            len(report.empty_dropped),
            report.empty_dropped[:10],
        )
    if report.non_string_cast:
        log.warning(
            "%s: cast %d non-string text cell(s) to str (first rows: %s)",
            path,
            len(report.non_string_cast),
            report.non_string_cast[:10],
        )
    if labels is not None:
        unknown = sorted(set(out["label"]) - set(labels))
        if unknown:
            rows = out.loc[out["label"].isin(unknown), "row"].tolist()[:10]
            raise DataError(
                f"{path}: unknown label(s) {unknown} in column {label_column!r} (first rows: {rows}). "
                f"Expected one of {list(labels)}; fix the file or set data.labels."
            )
    return out.reset_index(drop=True), report
