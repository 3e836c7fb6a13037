"""Bad input gets one clear error that names the file, row or key and says what to do."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from bertcompress.data.conll import read_conll
from bertcompress.data.conll_datamodule import ConllDataModule
from bertcompress.data.corpora import CsvDataModule
from bertcompress.data.readers import DataError
from tests.conftest import CONLL, requires_conll

LABELS = ["anger", "joy", "sadness"]


@requires_conll
def test_conll_label_set_is_read_from_the_whole_file_before_the_test_carve(tmp_path):
    """The first 80 CoNLL-2003 train sentences with no test file: a tag that lands only in the carved-out
    test part is still in the label set."""
    lines, n, in_sentence = [], 0, False
    for line in (CONLL / "train.txt").read_text(encoding="utf-8").splitlines():
        token = bool(line.strip()) and not line.startswith("-DOCSTART-")
        n += in_sentence and not token  # a sentence ends
        if n == 80:
            break
        in_sentence = token
        lines.append(line)
    path = tmp_path / "head.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert len(read_conll(path)) == 80
    tags = {t for s in read_conll(path) for t in s.tags}
    dm = ConllDataModule(train_file=str(path), test_size=0.2, max_length=32)
    dm.setup()
    train_tags = {t for row in dm.frames["train"]["label"] for t in row}
    assert tags - train_tags, "this slice should have a tag only outside the train part (the failing case)"
    assert set(dm.labels) == tags and dm.labels[0] == "O"


def test_conll_line_with_fewer_columns_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("EU NNP B-NP B-ORG\nrejects VBZ B-VP O\nFarm NNP I-NP\n. . O O\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.txt:3: 3 columns in 'Farm NNP I-NP', expected 4") as e:
        read_conll(path)
    assert "bad.txt:1" in str(e.value)


def test_conll_missing_file_names_the_config_key(tmp_path):
    dm = ConllDataModule(train_file=str(tmp_path / "train.txt"), test_file=str(tmp_path / "nope.txt"))
    (tmp_path / "train.txt").write_text("EU B-ORG\n", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match=r"nope\.txt: pass data\.test_file="):
        dm.setup()


def _csv(tmp_path, labels, name="train.csv", encoding="utf-8"):
    path = tmp_path / name
    df = pd.DataFrame({"text": [f"text number {i} é" for i in range(len(labels))], "label": labels})
    df.to_csv(path, index=False, encoding=encoding)
    return path


def test_inferred_labels_are_stripped_and_listed_with_counts(tmp_path, caplog):
    path = _csv(tmp_path, ["joy ", "joy", " anger", "anger", "joy", "sadness", "sadness", "anger"] * 3)
    dm = CsvDataModule(train_file=str(path), val_size=0.2)
    with caplog.at_level("INFO"):
        dm.setup()
    assert dm.labels == LABELS
    assert "inferred 3 labels" in caplog.text and "'joy': 9" in caplog.text
    assert dm.summary()["split_report"]["label_counts_in_file"] == {"anger": 9, "joy": 9, "sadness": 6}


def test_a_label_with_one_example_names_it_its_row_and_data_labels(tmp_path):
    path = _csv(tmp_path, ["joy", "anger", "sadness"] * 4 + ["jyo"])
    with pytest.raises(DataError, match=r"'jyo' at .*train\.csv row 12.*data\.labels"):
        CsvDataModule(train_file=str(path)).setup()


def test_labels_that_differ_only_by_case_are_an_error(tmp_path):
    path = _csv(tmp_path, ["joy", "Joy", "anger", "sadness"] * 4)
    with pytest.raises(
        DataError, match=r"differ only by case would become separate classes: 'Joy' \(4x\), 'joy' \(4x\).*data\.labels"
    ):
        CsvDataModule(train_file=str(path)).setup()


def test_a_cp1252_file_names_the_byte_and_suggests_data_encoding(tmp_path):
    path = _csv(tmp_path, ["joy", "anger", "sadness"] * 4, encoding="cp1252")
    with pytest.raises(DataError, match=r"byte 25 \(line 2, data row 0 under a header\).*data\.encoding=cp1252"):
        CsvDataModule(train_file=str(path)).setup()
    dm = CsvDataModule(train_file=str(path), encoding="cp1252", val_size=0.25)
    dm.setup()
    assert dm.texts("train")[0].endswith("é")


def test_missing_csv_file_hint_names_the_key_of_the_config_in_use(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"pass data\.train_file=/abs/path"):
        CsvDataModule(train_file=str(tmp_path / "nope.csv")).setup()


@pytest.fixture
def tfidf_artifact(tmp_path):
    from bertcompress.models.tfidf import TfidfLR

    texts = [f"word{i % 3} text {i}" for i in range(30)]
    model = TfidfLR().fit(texts, [i % 3 for i in range(30)], LABELS)
    return model.save(tmp_path / "tfidf")


def _hf_artifact(tmp_path, tiny_bert_dir):
    from bertcompress.compression.artifact import save_artifact
    from tests.test_compression import _final_model

    final = _final_model(tiny_bert_dir)
    return save_artifact(tmp_path / "hf", "hf", final.encoder.tokenizer, final.label_names, 32, hf_model=final.hf_model)


@pytest.mark.parametrize(
    "damage, match",
    [
        ("manifest_json", r"manifest\.json: not valid JSON"),
        ("manifest_keys", r"manifest\.json: the manifest lacks \['label_names'\]"),
        ("weights_missing", r"model\.safetensors: the hf weight file named by .* is missing"),
        ("weights_truncated", r"could not be loaded \(.*\).*weights: model\.safetensors.*re-export it"),
    ],
)
def test_damaged_artifact_raises_one_artifact_error_naming_the_file(damage, match, tmp_path, tiny_bert_dir):
    from bertcompress.artifacts import ArtifactError, load_artifact

    path = _hf_artifact(tmp_path, tiny_bert_dir)
    manifest, weights = path / "manifest.json", path / "model.safetensors"
    if damage == "manifest_json":
        manifest.write_text(manifest.read_text()[:-20])
    elif damage == "manifest_keys":
        data = json.loads(manifest.read_text())
        del data["label_names"]
        manifest.write_text(json.dumps(data))
    elif damage == "weights_missing":
        weights.unlink()
    else:
        weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")  # a header length the file cannot hold
    with pytest.raises(ArtifactError, match=match):
        load_artifact(path)


def test_damaged_npz_and_safetensors_weights_name_the_file(tmp_path, tfidf_artifact):
    from bertcompress.artifacts import ArtifactError, load_artifact

    (tfidf_artifact / "tfidf.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ArtifactError, match=r"tfidf: the sklearn artifact could not be loaded.*tfidf\.npz"):
        load_artifact(tfidf_artifact)
    torch_dir = tmp_path / "torch_art"
    shutil.copytree(tfidf_artifact, torch_dir)
    data = json.loads((torch_dir / "manifest.json").read_text()) | {"format": "torch", "weights": "model.safetensors"}
    (torch_dir / "manifest.json").write_text(json.dumps(data))
    (torch_dir / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{bad json")
    (torch_dir / "module.json").write_text('{"layout": "bertcompress-torch-safetensors/1"}')
    with pytest.raises(ArtifactError, match=r"torch_art: the torch artifact could not be loaded"):
        load_artifact(torch_dir)


def test_predict_cli_prints_the_artifact_error_without_a_traceback(tmp_path, tiny_bert_dir, capsys):
    from bertcompress.cli import predict

    path = _hf_artifact(tmp_path, tiny_bert_dir)
    (path / "manifest.json").write_text("{")
    assert predict([str(path), "text"]) == 2
    err = capsys.readouterr().err
    assert "manifest.json: not valid JSON" in err and "Traceback" not in err


@pytest.mark.parametrize("header", ["text,text,label", "text,label,label"])
def test_a_column_named_twice_in_the_header_is_an_error(header, tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text(header + "\n" + "".join(f"a{i},b{i},{LABELS[i % 3]}\n" for i in range(12)))
    dm = CsvDataModule(train_file=str(path), test_size=0.25)
    with pytest.raises(DataError, match=r"dup\.csv: the header names column\(s\) \['(text|label)'\] more than once"):
        dm.setup()


def test_the_decoding_error_names_the_real_bad_byte_after_non_ascii_text(tmp_path):
    lines = ["text,label", *(f"আমি আজ খুব খুশি {i},{LABELS[i % 3]}" for i in range(5))]
    good = ("\n".join(lines) + "\n").encode("utf-8")
    path = tmp_path / "bad.csv"
    path.write_bytes(good + b"caf\xe9,joy\n")  # a cp1252 byte on line 7, after 3-byte Bengali characters
    with pytest.raises(DataError, match=rf"byte {len(good) + 3} \(line 7, data row 5 under a header\) is b'\\xe9"):
        CsvDataModule(train_file=str(path)).setup()


def test_data_labels_naming_a_label_with_no_training_text_is_an_error(tmp_path):
    dm = CsvDataModule(train_file=str(_csv(tmp_path, LABELS * 10)), labels=[*LABELS, "love"], test_size=0.3)
    with pytest.raises(DataError, match=r"data\.labels lists \['love'\], which no training text has"):
        dm.setup()


def test_a_file_whose_texts_are_all_empty_names_the_file_and_column(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("text,label\n" + "".join(f" ,{LABELS[i % 3]}\n" for i in range(9)))
    with pytest.raises(DataError, match=r"empty\.csv: all 9 rows have an empty 'text' or 'label' cell"):
        CsvDataModule(train_file=str(path)).setup()


@pytest.mark.parametrize("content,match", [(b"", "holds no text"), (b"\x00\x01\xff\xfe" * 40, "not UTF-8 text")])
def test_an_empty_or_binary_unlabeled_file_is_one_error_naming_the_key(content, match, tmp_path):
    from bertcompress.data.augment import read_unlabeled

    path = tmp_path / "pool.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=rf"augment\.unlabeled_file={path}: .*{match}"):
        read_unlabeled(path)


@pytest.mark.parametrize(
    "text,match",
    [
        ("joy: [[joy]]\n", r"'joy' maps to \[\['joy'\]\]; give an artifact label, a flat list of them, or null"),
        ("joy: !!python/object/apply:os.system [echo pwned]\n", "not a plain YAML label map"),
        ("{not json", "not valid JSON"),
    ],
)
def test_a_bad_label_map_is_one_error_naming_the_file(text, match, tmp_path):
    from bertcompress_runtime.labelmap import read_label_map

    path = tmp_path / ("map.json" if text.startswith("{") else "map.yaml")
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as e:
        read_label_map(path, LABELS)
    assert str(path) in str(e.value)


def test_a_full_disk_is_one_line_naming_what_to_do():
    from safetensors import SafetensorError

    from bertcompress.errors import disk_full

    try:
        try:
            raise SafetensorError(
                'Error while serializing: IoError(Os { code: 28, message: "No space left on device" })'
            )
        except SafetensorError as inner:
            raise RuntimeError("saving the teacher failed") from inner
    except RuntimeError as e:
        full = disk_full(e)
    assert full is not None and full.errno == 28
    assert "free disk space or point paths.cache_dir" in str(full) and "\n" not in str(full)
    assert disk_full(ValueError("no")) is None
