"""An artifact reads only regular files inside its own dir, in both installs: manifest paths that are
absolute or climb out, symlinks that lead out, devices, FIFOs and oversized JSON are refused with an
ArtifactError naming the file; unknown format versions are refused; an ``hf`` artifact opens only its
safetensors; a manifest whose label_names do not fit the model, and a --file that is missing or binary,
end ``predict`` with one line."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import numpy as np
import pytest
from omegaconf import OmegaConf

from tests.test_artifacts import LABELS, _static_final, _WritesAFile


def _loaders():
    from bertcompress_runtime import load

    from bertcompress.artifacts import load_artifact

    return {"runtime": load, "training": load_artifact}


@pytest.fixture(scope="module")
def dirs(tmp_path_factory, tiny_bert_dir, ubmec_texts):
    """{kind: a pristine artifact dir}: TF-IDF floor, an ONNX CNN, a torch CNN and an hf teacher."""
    from bertcompress.artifacts.export import export_artifact
    from bertcompress.compression.apply import compress_and_save
    from bertcompress.models.tfidf import TfidfLR
    from tests.test_compression import _final_model

    root = tmp_path_factory.mktemp("safety")
    TfidfLR(ngram_range=(2, 3)).fit(ubmec_texts[:120], [i % 6 for i in range(120)], LABELS).save(root / "tfidf")
    none = OmegaConf.create({"name": "none", "pruning": None, "quantization": None})
    compress_and_save(_static_final("cnn", tiny_bert_dir, ubmec_texts[:50]), none, root / "torch", None)
    export_artifact(root / "torch", root / "onnx")
    compress_and_save(_final_model(tiny_bert_dir), none, root / "hf", None)
    assert json.loads((root / "hf" / "manifest.json").read_text())["format"] == "hf"
    return root


def _copy(dirs, kind, tmp_path):
    return shutil.copytree(dirs / kind, tmp_path / kind)


def _edit(art, **changes):
    manifest = json.loads((art / "manifest.json").read_text())
    manifest.update(changes)
    (art / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("install", ["runtime", "training"])
@pytest.mark.parametrize(
    "key,value",
    [
        ("vocabulary", "/dev/zero"),
        ("vocabulary", "../outside.json"),
        ("weights", "/tmp/x.npz"),
        ("weights", "../x.npz"),
    ],
)
def test_manifest_paths_outside_the_dir_are_refused(install, key, value, dirs, tmp_path):
    from bertcompress.artifacts import ArtifactError

    art = _copy(dirs, "tfidf", tmp_path)
    shutil.copy(art / "tfidf.npz", tmp_path / "x.npz")
    shutil.copy(art / "vocabulary.json", tmp_path / "outside.json")
    _edit(art, **{key: value})
    with pytest.raises(ArtifactError, match=f"{key} = '{value}'.*inside its own dir"):
        _loaders()[install](art)


@pytest.mark.parametrize("install", ["runtime", "training"])
@pytest.mark.parametrize(
    "kind,name", [("onnx", "model.onnx"), ("torch", "model.safetensors"), ("tfidf", "vocabulary.json")]
)
def test_a_symlink_out_of_the_dir_is_refused_and_one_inside_is_kept(install, kind, name, dirs, tmp_path):
    from bertcompress.artifacts import ArtifactError

    art = _copy(dirs, kind, tmp_path)
    elsewhere = tmp_path / "elsewhere" / name
    elsewhere.parent.mkdir()
    shutil.move(art / name, elsewhere)
    (art / name).symlink_to(elsewhere)
    with pytest.raises(ArtifactError, match="symlink that leads out of the artifact dir"):
        _loaders()[install](art)
    (art / name).unlink()
    shutil.move(elsewhere, art / f"real-{name}")
    (art / name).symlink_to(f"real-{name}")  # a relative link inside the dir
    if not (install == "runtime" and kind == "torch"):  # (the runtime loads no torch artifact)
        assert _loaders()[install](art).predict_proba(["আমি আজ খুব খুশি"]).shape == (1, 6)


@pytest.mark.parametrize("install", ["runtime", "training"])
def test_a_fifo_and_an_oversized_manifest_are_refused_without_reading_them(install, dirs, tmp_path):
    from bertcompress.artifacts import ArtifactError

    art = _copy(dirs, "tfidf", tmp_path)
    (art / "vocabulary.json").unlink()
    os.mkfifo(art / "vocabulary.json")  # reading it would block forever
    with pytest.raises(ArtifactError, match="not a regular file"):
        _loaders()[install](art)
    (art / "vocabulary.json").unlink()
    shutil.copy(dirs / "tfidf" / "vocabulary.json", art)
    manifest = json.loads((art / "manifest.json").read_text())
    (art / "manifest.json").write_text(json.dumps({**manifest, "padding": "x" * (2 << 20)}))
    with pytest.raises(ArtifactError, match="over the 1,048,576-byte limit"):
        _loaders()[install](art)


@pytest.mark.parametrize("install", ["runtime", "training"])
@pytest.mark.parametrize("version", [99, "banana", True])
def test_an_unknown_format_version_is_refused(install, version, dirs, tmp_path):
    from bertcompress.artifacts import ArtifactError

    art = _copy(dirs, "onnx", tmp_path)
    _edit(art, format_version=version)
    with pytest.raises(ArtifactError, match=r"this build reads format versions \[1, 2\]"):
        _loaders()[install](art)


def test_an_onnx_artifact_of_format_1_still_loads(dirs, tmp_path):
    art = _copy(dirs, "onnx", tmp_path)
    manifest = json.loads((art / "manifest.json").read_text())
    manifest.pop("format_version")
    (art / "manifest.json").write_text(json.dumps(manifest))
    for load in _loaders().values():
        assert load(art).predict_proba(["আমি আজ খুব খুশি"]).shape == (1, 6)


def test_an_hf_artifact_opens_only_its_safetensors(dirs, tmp_path):
    from bertcompress.artifacts import ArtifactError, load_artifact

    art = _copy(dirs, "hf", tmp_path)
    marker = tmp_path / "pwned.txt"
    (art / "pytorch_model.bin").write_bytes(pickle.dumps(_WritesAFile(marker)))
    assert load_artifact(art).predict_proba(["আমি আজ খুব খুশি"]).shape == (1, 6)
    _edit(art, weights="pytorch_model.bin")
    with pytest.raises(ArtifactError, match="weights = 'pytorch_model.bin'; a hf artifact's weights are"):
        load_artifact(art)
    assert not marker.exists()


@pytest.mark.parametrize("install", ["runtime", "training"])
def test_bench_refuses_a_weight_file_elsewhere(install, dirs, tmp_path, capsys):
    from bertcompress_runtime.cli import bench as runtime_bench

    from bertcompress.cli import bench as training_bench

    art = _copy(dirs, "onnx" if install == "runtime" else "hf", tmp_path)
    (tmp_path / "tiny.bin").write_bytes(b"0")
    _edit(art, weights="../tiny.bin")
    data = tmp_path / "data.csv"
    data.write_text("text,label\nআমি আজ খুব খুশি,joy\nভয় পেয়েছি,fear\n", encoding="utf-8")
    bench = runtime_bench if install == "runtime" else training_bench
    assert bench([str(art), "--data", str(data), "--runs", "1", "--warmup", "0"]) == 2
    err = capsys.readouterr().err
    assert "weights = '../tiny.bin'" in err and "Traceback" not in err


@pytest.mark.parametrize("install", ["runtime", "training"])
def test_predict_names_label_names_that_do_not_fit_the_model(install, dirs, tmp_path, capsys):
    from bertcompress_runtime.cli import predict as runtime_predict

    from bertcompress.cli import predict as training_predict

    art = _copy(dirs, "onnx", tmp_path)
    _edit(art, label_names=LABELS[:4])
    predict = runtime_predict if install == "runtime" else training_predict
    assert predict([str(art), "আমি আজ খুব খুশি"]) == 2
    assert "label_names has 4 names but the model gives 6 outputs" in capsys.readouterr().err


@pytest.mark.parametrize("install", ["runtime", "training"])
def test_predict_file_missing_or_binary_is_one_line(install, dirs, tmp_path, capsys):
    from bertcompress_runtime.cli import predict as runtime_predict

    from bertcompress.cli import predict as training_predict

    predict = runtime_predict if install == "runtime" else training_predict
    binary = tmp_path / "blob.bin"
    binary.write_bytes(np.random.default_rng(0).integers(0, 256, 512, dtype=np.uint8).tobytes())
    for file, expected in [(tmp_path / "none.txt", "cannot be read"), (binary, "is not UTF-8 text")]:
        assert predict([str(dirs / "onnx"), "--file", str(file)]) == 2
        err = capsys.readouterr().err
        assert f"--file {file}: " in err and expected in err and "Traceback" not in err
