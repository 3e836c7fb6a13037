"""Corpora through Hugging Face ``datasets``: data files, save_to_disk dirs, hub names; tokenization with
``Dataset.map`` cached by content."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from bertcompress.data.corpora import CsvDataModule, HFDataModule
from bertcompress.data.readers import DataError

ROWS = [(f"টেক্সট নম্বর {i}", ["joy", "anger", "fear"][i % 3]) for i in range(60)]


def _frames(dm) -> dict:
    dm.setup()
    return {s: dm.frames[s][["id", "text", "label"]].reset_index(drop=True) for s in ("train", "val", "test")}


def test_csv_json_and_parquet_files_give_the_same_splits(tmp_path):
    df = pd.DataFrame(ROWS, columns=["sentence", "emotion"])
    df.to_csv(tmp_path / "t.csv", index=False)
    df.to_json(tmp_path / "t.jsonl", orient="records", lines=True, force_ascii=False)
    df.to_parquet(tmp_path / "t.parquet")
    got = [
        _frames(CsvDataModule(str(tmp_path / f"t.{ext}"), text_column="sentence", label_column="emotion"))
        for ext in ("csv", "jsonl", "parquet")
    ]
    for other in got[1:]:
        for split in ("train", "val", "test"):
            pd.testing.assert_frame_equal(got[0][split], other[split])
    assert sum(len(f) for f in got[0].values()) == 60


def test_a_save_to_disk_dir_with_its_splits_and_class_label_names(tmp_path):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    features = Features({"text": Value("string"), "label": ClassLabel(names=["anger", "fear", "joy"])})
    names = ["anger", "fear", "joy"]

    def part(rows):
        return Dataset.from_dict({"text": [t for t, _ in rows], "label": [names.index(y) for _, y in rows]}, features)

    DatasetDict({"train": part(ROWS[:40]), "validation": part(ROWS[40:50]), "test": part(ROWS[50:])}).save_to_disk(
        tmp_path / "saved"
    )
    dm = HFDataModule(str(tmp_path / "saved"))
    frames = _frames(dm)
    assert dm.labels == names  # the ClassLabel's names, in its order
    assert [len(frames[s]) for s in ("train", "val", "test")] == [40, 10, 10]
    assert frames["test"]["text"].tolist() == [t for t, _ in ROWS[50:]]
    assert frames["test"]["label"].tolist() == [y for _, y in ROWS[50:]]
    assert frames["val"]["id"].min() == 10_000_000  # split 1
    fp = dm.fingerprint()
    assert fp["files"] and fp["split"]["split_map"]["val"] == "validation"
    with pytest.raises(DataError, match=r"data.path=.*: no split 'training' \(data.split_map.train\); its splits"):
        HFDataModule(str(tmp_path / "saved"), split_map={"train": "training"}).setup()


@pytest.mark.slow  # a subprocess or notebook run; `make test-full`
def test_a_hub_name_offline_fails_naming_the_dataset_and_the_setting(tmp_path):
    code = (
        "from bertcompress.data.corpora import HFDataModule\nHFDataModule('someone/no_such_bengali_corpus').setup()\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "DataError: data.path=someone/no_such_bengali_corpus: the Hub dataset could not be loaded" in last
    assert "HF_HUB_OFFLINE is set" in last and "save_to_disk" in last


def test_tokenization_is_cached_by_content_and_memory_mapped(tmp_path, tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    from bertcompress.data.encoding import TextEncoder
    from bertcompress.data.hf_io import encode_dataset

    calls = []

    class Counting(TextEncoder):
        def __call__(self, texts):
            calls.append(len(texts))
            return super().__call__(texts)

    encoder = Counting(AutoTokenizer.from_pretrained(tiny_tokenizer_dir), max_length=16)
    texts = [t for t, _ in ROWS]
    first = encode_dataset(range(60), texts, [0] * 60, encoder, tmp_path / "tokens")
    assert calls and first[3] == {"id": 3, "labels": 0, "input_ids": encoder([texts[3]])[0]}
    calls.clear()
    again = encode_dataset(range(60), texts, [0] * 60, Counting(encoder.tokenizer, 16), tmp_path / "tokens")
    assert not calls and again.cache_files and again[:] == first[:]  # read back from the arrow file
    other = encode_dataset(range(60), texts[::-1], [0] * 60, encoder, tmp_path / "tokens")
    assert calls and other[0]["input_ids"] == first[59]["input_ids"]  # other texts: tokenized afresh
    assert len(list((tmp_path / "tokens").glob("tokens-*.arrow"))) == 2
    in_memory = encode_dataset(range(60), texts, [0] * 60, encoder, None)
    assert not in_memory.cache_files and in_memory[:] == first[:]
