"""UBMEC paper split on the real file, the clean split, the generic CSV module and every bad-input error."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from bertcompress.data.corpora import CsvDataModule, UBMECDataModule
from bertcompress.data.datamodule import UBMEC_LABELS
from bertcompress.data.readers import DataError
from tests.conftest import DATA_DIR, UBMEC, requires_ubmec


@pytest.fixture(scope="module")
def ubmec_dm():
    if not UBMEC.is_file():
        pytest.skip("UBMEC missing")
    dm = UBMECDataModule(str(UBMEC), val_size=0.1, seed=42)
    dm.setup()
    return dm


@requires_ubmec
def test_paper_split_matches_the_paper(ubmec_dm):
    from bertcompress.data.readers import clean_frame, read_table
    from bertcompress.data.splits import paper_split

    df, report = clean_frame(read_table(UBMEC), UBMEC, "text", "classes", UBMEC_LABELS)
    assert report.non_string_cast == [12039]  # the integer cell 1, read as "1"
    train, test = paper_split(df)
    assert len(train) + len(test) == 13072
    assert (len(train), len(test)) == (9150, 3922)
    assert test["row"].tolist()[:5] == [10257, 12085, 12745, 11709, 7717]
    assert int(test["row"].sum()) == 26_052_637 and int(train["row"].sum()) == 61_475_900
    assert test["label"].value_counts().to_dict() == {
        "joy": 973,
        "sadness": 750,
        "anger": 738,
        "disgust": 631,
        "surprise": 425,
        "fear": 405,
    }
    assert train["label"].value_counts().to_dict() == {
        "joy": 2317,
        "sadness": 1872,
        "anger": 1684,
        "disgust": 1418,
        "fear": 943,
        "surprise": 916,
    }


@requires_ubmec
def test_datamodule_carves_a_stratified_validation_set(ubmec_dm):
    sizes = ubmec_dm.summary()["sizes"]
    assert sizes == {"train": 8235, "val": 915, "test": 3922}
    assert ubmec_dm.ids("test")[:5] == [10257, 12085, 12745, 11709, 7717]
    assert ubmec_dm.labels == list(UBMEC_LABELS)
    val = pd.Series(ubmec_dm.frames["val"]["label"]).value_counts(normalize=True)
    train = pd.Series(ubmec_dm.frames["train"]["label"]).value_counts(normalize=True)
    assert (val - train).abs().max() < 0.01
    assert not set(ubmec_dm.ids("val")) & set(ubmec_dm.ids("train"))


@requires_ubmec
def test_clean_split_reports_what_it_removed():
    dm = UBMECDataModule(str(UBMEC), split="clean")
    dm.setup()
    rep = dm.split_report["clean"]
    assert rep["conflicting_texts"] == 58
    assert rep["nfc_changed_rows"] == 8637
    assert rep["train"] + rep["test"] == len(dm.frames["train"]) + len(dm.frames["val"]) + len(dm.frames["test"])
    train_texts = set(dm.frames["train"]["text"]) | set(dm.frames["val"]["text"])
    assert not set(dm.frames["test"]["text"]) & train_texts


def test_dynamic_padding_and_max_length(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    from bertcompress.data.encoding import TextEncoder

    dm = UBMECDataModule(str(UBMEC), max_length=12, batch_size=4, limit_train=16, limit_val=8, limit_test=8)
    dm = dm.view(TextEncoder(AutoTokenizer.from_pretrained(tiny_tokenizer_dir), max_length=12))
    batch = next(iter(dm.test_dataloader()))
    lengths = batch["attention_mask"].sum(1)
    assert batch["input_ids"].shape[1] == int(lengths.max()) <= 12
    assert set(batch) >= {"input_ids", "attention_mask", "labels", "id"}


def test_missing_file_names_path_env_var_and_upstream(tmp_path):
    dm = UBMECDataModule(str(tmp_path / "nope.xlsx"))
    with pytest.raises(FileNotFoundError) as e:
        dm.setup()
    msg = str(e.value)
    assert "nope.xlsx" in msg and "BERTCOMPRESS_DATA_DIR" in msg
    assert "github.com/Sakibsourav019/UBMEC" in msg


def _xlsx(tmp_path, rows, columns=("text", "classes")):
    path = tmp_path / "mini.xlsx"
    pd.DataFrame(rows, columns=list(columns)).to_excel(path, index=False)
    return path


def test_missing_column_lists_the_columns_found(tmp_path):
    path = _xlsx(tmp_path, [["ভালো", "joy"]], columns=("sentence", "classes"))
    with pytest.raises(DataError, match=r"missing column\(s\) \['text'\].*Columns found: \['sentence', 'classes'\]"):
        UBMECDataModule(str(path)).setup()


def test_unknown_labels_are_listed_with_rows(tmp_path):
    rows = [["ভালো", "joy"], ["খারাপ", "happy"], ["রাগ", "anger"], ["ভয়", "Fear?"]]
    with pytest.raises(DataError, match=r"mini.xlsx: unknown label\(s\) \['Fear\?', 'happy'\].*rows: \[1, 3\]"):
        UBMECDataModule(str(_xlsx(tmp_path, rows))).setup()


def test_empty_and_non_string_cells_are_dropped_or_cast_and_counted(tmp_path, caplog):
    rows = [[f"লেখা {i}", lab] for i, lab in enumerate(UBMEC_LABELS * 4)]
    rows[3] = [None, "joy"]
    rows[5] = ["   ", "fear"]
    rows[7] = [12345, "anger"]
    rows[9] = ["কিছু", None]
    with caplog.at_level(logging.WARNING):
        dm = UBMECDataModule(str(_xlsx(tmp_path, rows)), val_size=6, test_size=0.25)
        dm.setup()
    rep = dm.split_report["cleaning"]
    assert rep["empty_dropped"] == 3 and rep["non_string_cast"] == 1
    assert "dropped 3 row(s)" in caplog.text and "[3, 5, 9]" in caplog.text
    assert "cast 1 non-string" in caplog.text and "[7]" in caplog.text
    all_texts = sum((dm.texts(s) for s in ("train", "val", "test")), [])
    assert "12345" in all_texts and len(all_texts) == len(rows) - 3


def test_csv_module_reads_tsv_without_header_and_infers_labels(tmp_path):
    lines = [f"teks nomor {i}\t{'positive' if i % 2 else 'negative'}" for i in range(40)]
    (tmp_path / "t.tsv").write_text("\n".join(lines) + "\n")
    dm = CsvDataModule(
        str(tmp_path / "t.tsv"), header=False, column_names=["text", "label"], test_size=0.25, val_size=0.2
    )
    dm.setup()
    assert dm.labels == ["negative", "positive"]
    assert sum(dm.summary()["sizes"].values()) == 40
    assert len(dm.frames["test"]) == 10


def test_csv_module_bad_input_errors(tmp_path):
    (tmp_path / "a.csv").write_text("sentence,label\nhello,pos\nbye,neg\n")
    with pytest.raises(
        DataError, match=r"a.csv: missing column\(s\) \['text'\]. Columns found: \['sentence', 'label'\]"
    ):
        CsvDataModule(str(tmp_path / "a.csv")).setup()
    (tmp_path / "b.csv").write_text("text,label\nhello,pos\nbye,meh\n")
    with pytest.raises(DataError, match=r"b.csv: unknown label\(s\) \['meh'\] .*rows: \[1\]"):
        CsvDataModule(str(tmp_path / "b.csv"), labels=["pos", "neg"]).setup()
    (tmp_path / "c.csv").write_text("")
    with pytest.raises(DataError, match="c.csv: the file is empty"):
        CsvDataModule(str(tmp_path / "c.csv")).setup()
    with pytest.raises(FileNotFoundError, match="BERTCOMPRESS_DATA_DIR"):
        CsvDataModule(str(tmp_path / "missing.csv")).setup()


def test_csv_module_validation_file_labels_must_be_known(tmp_path):
    (tmp_path / "tr.csv").write_text("text,label\n" + "".join(f"t{i},{'ab'[i % 2]}\n" for i in range(20)))
    (tmp_path / "va.csv").write_text("text,label\nx,a\ny,c\n")
    with pytest.raises(DataError, match=r"va.csv: unknown label\(s\) \['c'\]"):
        CsvDataModule(str(tmp_path / "tr.csv"), val_file=str(tmp_path / "va.csv")).setup()


@pytest.mark.skipif(not (DATA_DIR / "indonlu").is_dir(), reason="IndoNLU data missing")
@pytest.mark.parametrize(
    ("option", "sizes"), [("indonlu_smsa", (11000, 1260, 500)), ("indonlu_emot", (3521, 440, 440))]
)
def test_indonlu_configs_read_the_real_files(option, sizes, tmp_path):
    import hydra

    from tests.conftest import compose

    cfg = compose([f"data={option}"], tmp_path)
    dm = hydra.utils.instantiate(cfg.data)
    dm.setup()
    s = dm.summary()["sizes"]
    assert (s["train"], s["val"], s["test"]) == sizes
