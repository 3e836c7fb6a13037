"""Train/test splits: the paper's exact UBMEC split, a cleaned variant, and the validation carve."""

from __future__ import annotations

import logging
import unicodedata

import pandas as pd
from sklearn.model_selection import train_test_split

log = logging.getLogger(__name__)


def paper_split(df: pd.DataFrame, test_size: float = 0.3, random_state: int = 42) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reproduce Rahman et al. 2025 / Sourav et al. 2022's UBMEC split exactly.

    1. drop exact (text, label) duplicates, keeping the first (13,072 of 13,436 rows remain);
    2. ``train_test_split(test_size=0.3, random_state=42)``, unstratified (9,150 / 3,922).

    Args:
        df: frame with ``text``, ``label`` and ``row`` columns, in file order.

    Returns:
        (train, test) frames; their index is the deduplicated frame's positional order,
        and ``row`` keeps the 0-based file row.
    """
    dedup = df.drop_duplicates(subset=["text", "label"], keep="first").reset_index(drop=True)
    train, test = train_test_split(dedup, test_size=test_size, random_state=random_state)
    return train, test


def clean_split(
    df: pd.DataFrame, test_size: float = 0.3, random_state: int = 42
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """A leakage-free split: NFC-normalise, drop conflicting-label texts, dedupe, split, de-leak.

    Returns:
        (train, test, report) where ``report`` counts what each step removed.
    """
    nfc = df.assign(text=df["text"].map(lambda t: unicodedata.normalize("NFC", t)))
    n_changed = int((nfc["text"] != df["text"]).sum())
    labels_per_text = nfc.groupby("text")["label"].nunique()
    conflicting = set(labels_per_text[labels_per_text > 1].index)
    no_conflict = nfc[~nfc["text"].isin(conflicting)]
    dedup = no_conflict.drop_duplicates(subset=["text", "label"], keep="first").reset_index(drop=True)
    train, test = train_test_split(dedup, test_size=test_size, random_state=random_state)
    leaked = test["text"].isin(set(train["text"]))
    test = test[~leaked]
    report = {
        "nfc_changed_rows": n_changed,
        "conflicting_texts": len(conflicting),
        "conflicting_rows_dropped": int(len(nfc) - len(no_conflict)),
        "duplicate_rows_dropped": int(len(no_conflict) - len(dedup)),
        "test_rows_in_train_dropped": int(leaked.sum()),
        "train": len(train),
        "test": len(test),
    }
    log.info("split=clean removed: %s", report)
    return train, test, report


def carve_validation(train: pd.DataFrame, val_size: float | int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Carve a stratified, seeded validation set out of ``train`` for early stopping."""
    stratify = train["label"] if train["label"].value_counts().min() >= 2 else None
    tr, val = train_test_split(train, test_size=val_size, random_state=seed, stratify=stratify)
    return tr, val


def stratified_head(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """A seeded, stratified subset of ``n`` rows (all rows when ``n`` is None or >= len)."""
    if n is None or n >= len(df):
        return df
    stratify = df["label"] if df["label"].value_counts().min() >= 2 and n >= df["label"].nunique() else None
    sub, _ = train_test_split(df, train_size=n, random_state=seed, stratify=stratify)
    return sub
