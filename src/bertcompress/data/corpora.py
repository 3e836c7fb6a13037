"""The corpora: UBMEC (the paper's exact split) and any CSV/TSV/XLSX text/label table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bertcompress.data.datamodule import ID_STRIDE, UBMEC_LABELS, UBMEC_UPSTREAM, ClassificationDataModule
from bertcompress.data.readers import DataError, clean_frame, infer_labels, read_table
from bertcompress.data.splits import clean_split, paper_split


class UBMECDataModule(ClassificationDataModule):
    """UBMEC (Sourav et al. 2022), 6 Bengali emotions, read from the real xlsx.

    Args:
        path: the xlsx; default ``${BERTCOMPRESS_DATA_DIR}/ubmec/ubmec.xlsx``.
        split: ``paper`` (Rahman et al. 2025's exact 9,150/3,922 split) or ``clean``
            (NFC, conflicting labels dropped, test texts seen in train removed).
        test_size / split_seed: the train/test split (0.3 / 42 in the paper).

    ``id`` is the 0-based file row. Raises FileNotFoundError naming the path, the env var
    and the upstream URL when the file is missing; DataError for bad columns or labels.
    """

    def __init__(
        self,
        path: str,
        split: str = "paper",
        test_size: float = 0.3,
        split_seed: int = 42,
        sheet: str | int = 0,
        name: str = "ubmec",
        **kwargs,
    ):
        kwargs.setdefault("labels", UBMEC_LABELS)
        super().__init__(name=name, **kwargs)
        if split not in {"paper", "clean"}:
            raise ValueError(f"data.split={split!r}: expected 'paper' or 'clean'")
        self.path = Path(path)
        self.split = split
        self.test_size = test_size
        self.split_seed = split_seed
        self.sheet = sheet

    def source_files(self) -> list[Path]:
        return [self.path]

    def split_config(self) -> dict:
        return {"split": self.split, "test_size": self.test_size, "split_seed": self.split_seed}

    def load_splits(self) -> dict[str, pd.DataFrame | None]:
        raw = read_table(self.path, sheet=self.sheet, upstream=UBMEC_UPSTREAM, key="data.path")
        df, report = clean_frame(raw, self.path, "text", "classes", self.labels)
        df["id"] = df["row"]
        self.split_report = {"cleaning": report.as_dict()}
        if self.split == "paper":
            train, test = paper_split(df, self.test_size, self.split_seed)
        else:
            train, test, rep = clean_split(df, self.test_size, self.split_seed)
            self.split_report["clean"] = rep
        return {"train": train, "test": test, "val": None}


class CsvDataModule(ClassificationDataModule):
    """Any text/label table (CSV, TSV or XLSX; named columns), with optional val/test files.

    Args:
        train_file: the training table (or the only table, split by ``test_size``).
        val_file / test_file: optional; without a test file, ``test_size`` of train is held out
            (stratified, ``split_seed``); without a val file, ``val_size`` is carved from train.
        text_column / label_column: column names (or the names given by ``column_names``).
        header / column_names: for files with no header line (e.g. IndoNLU SmSA).
        sep: the delimiter (default: tab for .tsv, comma otherwise).
        encoding: the text encoding of a CSV/TSV file (default utf-8; e.g. cp1252 for Windows exports).

    ``id`` is ``file_index * 10,000,000 + row`` (train file 0, val 1, test 2).
    """

    def __init__(
        self,
        train_file: str,
        text_column: str = "text",
        label_column: str = "label",
        val_file: str | None = None,
        test_file: str | None = None,
        test_size: float = 0.2,
        split_seed: int = 42,
        sep: str | None = None,
        header: bool = True,
        column_names: Sequence[str] | None = None,
        sheet: str | int = 0,
        name: str = "csv",
        upstream: str | None = None,
        encoding: str = "utf-8",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.files = {
            "train": Path(train_file),
            "val": Path(val_file) if val_file else None,
            "test": Path(test_file) if test_file else None,
        }
        self.text_column, self.label_column = text_column, label_column
        self.test_size, self.split_seed = test_size, split_seed
        self.read_kwargs = dict(
            sep=sep, header=header, column_names=column_names, sheet=sheet, upstream=upstream, encoding=encoding
        )

    def source_files(self) -> list[Path]:
        return [p for p in self.files.values() if p is not None]

    def split_config(self) -> dict:
        return {"test_size": self.test_size if self.files["test"] is None else None, "split_seed": self.split_seed}

    def _read(self, split: str, index: int) -> pd.DataFrame:
        path = self.files[split]
        raw = read_table(path, **self.read_kwargs, key=f"data.{split}_file")
        df, report = clean_frame(raw, path, self.text_column, self.label_column, self.labels)
        df["id"] = index * ID_STRIDE + df["row"]
        self.split_report.setdefault("cleaning", {})[split] = report.as_dict()
        return df

    def load_splits(self) -> dict[str, pd.DataFrame | None]:
        train = self._read("train", 0)
        if self.labels is None:
            self.labels = infer_labels([(self.files["train"], train)])
        self.split_report["label_counts_in_file"] = (
            train["label"].value_counts().reindex(self.labels, fill_value=0).to_dict()
        )
        val = self._read("val", 1) if self.files["val"] is not None else None
        if self.files["test"] is not None:
            test = self._read("test", 2)
        else:
            from sklearn.model_selection import train_test_split

            train, test = train_test_split(
                train, test_size=self.test_size, random_state=self.split_seed, stratify=train["label"]
            )
        return {"train": train, "val": val, "test": test}


class HFDataModule(ClassificationDataModule):
    """A Hugging Face dataset: a hub name, a ``save_to_disk`` dir, or data files (CSV/TSV/JSON/Parquet).

    Args:
        path: a hub dataset name (``user/name``), a ``Dataset(Dict).save_to_disk`` dir, or one data file
            (then its rows are the train split, and val/test are carved from it).
        config_name: the hub dataset's configuration (its ``name=`` in ``load_dataset``), if any.
        split_map: ``{train, val, test}`` -> the dataset's split names (``val: validation``); a null or
            absent split is carved from train (``test_size``, then ``val_size``), stratified and seeded.
        text_column / label_column: the columns; a ``ClassLabel`` label column gives the label names.

    ``id`` is ``split_index * 10,000,000 + row`` (train 0, val 1, test 2). Raises DataError for an unknown
    name or dir (naming it, and HF_HUB_OFFLINE when set), a missing split, column or label.
    """

    def __init__(
        self,
        path: str,
        text_column: str = "text",
        label_column: str = "label",
        split_map: dict | None = None,
        config_name: str | None = None,
        test_size: float = 0.2,
        split_seed: int = 42,
        name: str = "hf",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.path, self.config_name = str(path), config_name
        self.split_map = dict(split_map or {"train": "train", "val": "validation", "test": "test"})
        self.text_column, self.label_column = text_column, label_column
        self.test_size, self.split_seed = test_size, split_seed
        self._fingerprints: dict = {}

    def source_files(self) -> list[Path]:
        p = Path(self.path)
        return sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p] if p.is_file() else []

    def split_config(self) -> dict:
        return {"split_map": self.split_map, "config_name": self.config_name, "test_size": self.test_size,
                "split_seed": self.split_seed, "hub": self._fingerprints}  # fmt: skip

    def load_splits(self) -> dict[str, pd.DataFrame | None]:
        from bertcompress.data.hf_io import load_splits

        if Path(self.path).is_file():
            frames = {"train": (read_table(self.path, key="data.path"), "train", None)}
        else:
            frames = load_splits(self.path, self.split_map, self.config_name)
        if not Path(self.path).exists():  # a hub dataset: its content enters the cache keys by fingerprint
            self._fingerprints = {s: ds._fingerprint for s, (_, _, ds) in frames.items()}
        if "train" not in frames:
            raise DataError(f"data.path={self.path}: no train split (data.split_map.train)")
        out = {}
        for index, split in enumerate(("train", "val", "test")):
            if split in frames:
                raw, theirs, ds = frames[split]
                if self.labels is None and ds is not None and hasattr(ds.features.get(self.label_column), "names"):
                    self.labels = list(ds.features[self.label_column].names)  # a ClassLabel column
                if ds is not None and hasattr(ds.features.get(self.label_column), "names"):
                    names = ds.features[self.label_column].names
                    raw = raw.assign(
                        **{self.label_column: [names[i] if i is not None else None for i in raw[self.label_column]]}
                    )
                df, report = clean_frame(
                    raw, f"{self.path}[{theirs}]", self.text_column, self.label_column, self.labels
                )
                df["id"] = index * ID_STRIDE + df["row"]
                self.split_report.setdefault("cleaning", {})[split] = report.as_dict()
                out[split] = df
        if self.labels is None:
            self.labels = infer_labels([(self.path, out["train"])])
        if "test" not in out:
            from sklearn.model_selection import train_test_split

            out["train"], out["test"] = train_test_split(
                out["train"], test_size=self.test_size, random_state=self.split_seed, stratify=out["train"]["label"]
            )
        return {"train": out["train"], "val": out.get("val"), "test": out["test"]}
