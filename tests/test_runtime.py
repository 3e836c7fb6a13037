"""The torch-free runtime (bertcompress_runtime): a tiny artifact of each kind, exported, classified in a
subprocess where torch, transformers, scikit-learn and the training package cannot be imported, agrees
with the torch path; label maps; the numpy TF-IDF equals scikit-learn's."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from omegaconf import OmegaConf

from tests.test_artifacts import LABELS, _static_final

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys
    class Refuse(importlib.abc.MetaPathFinder):
        BLOCKED = {"torch", "transformers", "sklearn", "bertcompress", "torchao", "lightning"}
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ImportError(f"{name} is blocked in this test")
    sys.meta_path.insert(0, Refuse())
    """
)


def run_without_torch(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter whose imports of torch & co fail."""
    script = BLOCKER + textwrap.dedent(code) + "\nassert 'torch' not in sys.modules\n"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, tiny_bert_dir, ubmec_texts):
    """{kind: (source artifact dir, exported dir, int8?)} for every artifact kind."""
    from bertcompress.artifacts.export import export_artifact
    from bertcompress.compression.apply import compress_and_save
    from bertcompress.models.tfidf import TfidfLR
    from tests.test_compression import _final_model

    root = tmp_path_factory.mktemp("runtime")
    none = OmegaConf.create({"name": "none", "pruning": None, "quantization": None})
    finals = {"teacher": _final_model(tiny_bert_dir)}
    finals |= {
        name: _static_final(name, tiny_bert_dir, ubmec_texts[:200])
        for name in ("cnn", "cnn_bag", "bilstm", "cnn_lstm", "ensemble")
    }
    out = {}
    for name, final in finals.items():
        src = root / f"{name}_src"
        compress_and_save(final, none, src, calibration_loader=None)
        export_artifact(src, root / f"{name}_onnx")
        out[name] = (src, root / f"{name}_onnx", False)
    for name in ("teacher", "cnn"):
        export_artifact(out[name][0], root / f"{name}_int8", int8=True)
        out[f"{name}_int8"] = (out[name][0], root / f"{name}_int8", True)
    tfidf = TfidfLR(ngram_range=(2, 4)).fit(ubmec_texts[:300], [i % 6 for i in range(300)], LABELS)
    tfidf.save(root / "tfidf")
    out["tfidf"] = (root / "tfidf", root / "tfidf", False)
    return out


@pytest.mark.parametrize(
    "kind", ["teacher", "teacher_int8", "cnn", "cnn_int8", "cnn_bag", "bilstm", "cnn_lstm", "ensemble", "tfidf"]
)
def test_each_artifact_kind_classifies_without_torch_like_the_torch_path(kind, artifacts, ubmec_texts, tmp_path):
    from bertcompress.artifacts import load_artifact

    src, exported, int8 = artifacts[kind]
    texts = ubmec_texts[300:340]
    (tmp_path / "texts.json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    proc = run_without_torch(
        f"""
        import json
        from bertcompress_runtime import load
        m = load({str(exported)!r})
        texts = json.load(open({str(tmp_path / "texts.json")!r}, encoding="utf-8"))
        json.dump(m.predict_proba(texts).tolist(), open({str(tmp_path / "p.json")!r}, "w"))
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runtime = np.array(json.loads((tmp_path / "p.json").read_text()))
    reference = load_artifact(src).predict_proba(texts)
    assert runtime.shape == (40, 6)
    if int8:  # ONNX Runtime's int8 against the fp32 torch module: quantization noise only
        assert np.abs(runtime - reference).max() < 0.05
        top2 = np.sort(reference, axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 0.1  # an untrained tiny model has near-ties that any rounding flips
        assert (runtime.argmax(1) == reference.argmax(1))[clear].all()
    else:
        assert np.abs(runtime - reference).max() < 1e-5


def test_the_runtime_cli_prints_what_the_torch_cli_prints(artifacts, ubmec_texts, tmp_path, capsys):
    from bertcompress.cli import predict

    exported = artifacts["cnn"][1]
    file = tmp_path / "in.txt"
    file.write_text("\n".join(" ".join(t.split()) for t in ubmec_texts[:5]) + "\n", encoding="utf-8")
    assert predict([str(exported), "--file", str(file)]) == 0
    torch_out = capsys.readouterr().out
    proc = run_without_torch(
        f"""
        import sys
        from bertcompress_runtime.cli import predict
        sys.exit(predict([{str(exported)!r}, "--file", {str(file)!r}]))
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == torch_out and len(proc.stdout.splitlines()) == 5
    hf = run_without_torch(
        f"""
        import sys
        from bertcompress_runtime.cli import predict
        sys.exit(predict([{str(artifacts["cnn"][0])!r}, "text"]))
        """
    )
    assert hf.returncode == 2 and "needs torch" in hf.stderr and "bertcompress-export" in hf.stderr


def test_numpy_tfidf_equals_scikit_learn(ubmec_texts, tmp_path):
    from bertcompress_runtime import load

    from bertcompress.models.tfidf import TfidfLR

    for analyzer, ngrams in (("char_wb", (2, 5)), ("char", (1, 3)), ("word", (1, 2))):
        model = TfidfLR(analyzer=analyzer, ngram_range=ngrams).fit(
            ubmec_texts[:400], [i % 6 for i in range(400)], LABELS
        )
        model.save(tmp_path / analyzer)
        texts = [*ubmec_texts[400:500], "", "  a  b\t c ", "ABC abc"]
        runtime = load(tmp_path / analyzer)
        assert np.abs(runtime.text_model.predict_proba(texts) - model.predict_proba(texts)).max() < 1e-12
        # the artifact's logits are float32 log-probabilities, as TfidfLR.logits gives them
        assert np.abs(runtime.predict_proba(texts) - model.predict_proba(texts)).max() < 1e-6


def test_label_map_many_to_one_both_ways_and_dropped_rows(tmp_path):
    from bertcompress_runtime.labelmap import evaluate, read_label_map

    names = ["anger", "disgust", "fear", "joy", "sadness", "surprise"]
    (tmp_path / "m.json").write_text(
        json.dumps(
            {"Anger/Disgust": ["anger", "disgust"], "happy": "joy", "glad": "joy", "sad": "sadness", "other": None}
        )
    )
    lmap = read_label_map(tmp_path / "m.json", names)
    assert lmap.classes == ["Anger/Disgust", "joy", "sadness"]
    probs = np.array(
        [
            [0.3, 0.3, 0.0, 0.4, 0.0, 0.0],  # anger+disgust 0.6 beats joy 0.4
            [0.0, 0.0, 0.0, 0.9, 0.1, 0.0],
            [0.0, 0.0, 0.0, 0.9, 0.1, 0.0],
            [0.1, 0.0, 0.0, 0.0, 0.2, 0.7],  # surprise is in no class: sadness wins
            [1.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # dropped
        ]
    )
    result = evaluate(probs, ["Anger/Disgust", "happy", "glad", "sad", "other"], lmap, "data.csv")
    assert result["n"] == 4 and result["dropped"] == 1 and result["accuracy"] == 100.0
    assert result["per_class"]["joy"]["support"] == 2 and result["macro_f1"] == 100.0
    with pytest.raises(ValueError, match=r"data.csv: data labels \['neutral'\] \(first at row 0\)"):
        evaluate(probs[:1], ["neutral"], lmap, "data.csv")
    (tmp_path / "bad.json").write_text(json.dumps({"a": ["anger"], "b": ["anger", "fear"]}))
    with pytest.raises(ValueError, match="count twice"):
        read_label_map(tmp_path / "bad.json", names)
    (tmp_path / "unknown.json").write_text(json.dumps({"a": "rage"}))
    with pytest.raises(ValueError, match=r"unknown.json: 'a' maps to \['rage'\]"):
        read_label_map(tmp_path / "unknown.json", names)


def test_runtime_bench_with_a_label_map_runs_without_torch(artifacts, ubmec_texts, tmp_path):
    import csv

    exported = artifacts["cnn"][1]
    with open(tmp_path / "d.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i, t in enumerate(ubmec_texts[:30]):
            w.writerow([t, ["Anger/Disgust", "happy", "other"][i % 3]])
    (tmp_path / "m.json").write_text(json.dumps({"Anger/Disgust": ["anger", "disgust"], "happy": "joy", "other": None}))
    proc = run_without_torch(
        f"""
        import sys
        from bertcompress_runtime.cli import bench
        sys.exit(bench([{str(exported)!r}, "--data", {str(tmp_path / "d.csv")!r}, "--label-map",
                        {str(tmp_path / "m.json")!r}, "--runs", "5", "--warmup", "1", "--out", {str(tmp_path / "r.json")!r}]))
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["n"] == 20 and result["dropped"] == 10 and result["classes"] == ["Anger/Disgust", "joy"]
    assert "Anger/Disgust" in proc.stdout and "no torch" in proc.stdout and result["latency_ms"]["p50"] > 0


@pytest.mark.parametrize(
    "kind", ["teacher", "teacher_int8", "cnn", "cnn_int8", "cnn_bag", "bilstm", "cnn_lstm", "ensemble", "tfidf"]
)
def test_a_text_gets_the_same_probabilities_alone_and_batched_with_longer_texts(kind, artifacts, ubmec_texts):
    """Padding must not leak: each short text alone and in one batch with much longer texts, in the
    runtime and (for the fp32 source) on the torch path."""
    from bertcompress_runtime import load

    from bertcompress.artifacts import load_artifact

    src, exported, int8 = artifacts[kind]
    by_length = sorted(ubmec_texts[:400], key=len)
    short, long = by_length[20:26], by_length[-6:]
    assert min(map(len, long)) > 4 * max(map(len, short))
    predictors = [load(exported)] + ([] if int8 else [load_artifact(src)])
    for predictor in predictors:
        alone = np.concatenate([predictor.predict_proba([t]) for t in short])
        batched = predictor.predict_proba([*long[:3], *short, *long[3:]])[3 : 3 + len(short)]
        if int8:  # dynamic int8 scales activations by the batch's range: only the decision must hold
            assert (alone.argmax(1) == batched.argmax(1)).all()
        else:
            assert np.abs(alone - batched).max() < 1e-5, type(predictor).__module__


@pytest.mark.slow  # a subprocess or notebook run; `make test-full`
def test_the_onnx_export_of_a_bilstm_prints_no_known_exporter_warnings(artifacts, tmp_path):
    """The Python warnings torch.onnx prints on a BiLSTM export (bertcompress.utils.logs.WARNINGS) are
    filtered; with ``-W default`` every other Python warning would still show. (torch's C++ shape-inference
    lines, ``[W... shape_type_inference.cpp] Warning: ...``, bypass Python and are not matched here.)"""
    import re

    src = artifacts["bilstm"][0]
    code = f"from bertcompress.cli import export; export([{str(src)!r}, {str(tmp_path / 'onnx')!r}])"
    proc = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "onnx" / "model.onnx").is_file()
    assert not re.search(r"\w+Warning: ", proc.stderr), proc.stderr[-3000:]


def test_loading_an_hf_or_torch_artifact_imports_no_training_code(artifacts, tmp_path, tiny_bert_dir, ubmec_texts):
    """``load_artifact`` of an HF and a torch artifact (a static student rebuilt without pickle, fp32 and
    torch.ao int8) and a prediction import neither Lightning nor the quantization dispatcher."""
    from bertcompress.compression.apply import compress_and_save

    q = {
        "_target_": "bertcompress.compression.steps.PostTrainingQuantization",
        "mode": "dynamic",
        "backend": "torch_ao",
    }
    int8 = OmegaConf.create({"name": "quant", "pruning": None, "quantization": q})
    compress_and_save(_static_final("bilstm", tiny_bert_dir, ubmec_texts[:200]), int8, tmp_path / "int8", None)
    dirs = [str(artifacts[k][0]) for k in ("teacher", "cnn")] + [str(tmp_path / "int8")]
    code = (
        "import sys\nfrom bertcompress.artifacts import load_artifact\n"
        "for d in sys.argv[1:]:\n    load_artifact(d).predict_proba(['আমি আজ খুব খুশি'])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning', 'torchmetrics')"
        " or m == 'bertcompress.compression.quantization'))"
    )
    proc = subprocess.run([sys.executable, "-c", code, *dirs], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_the_runtime_never_imports_the_training_package_by_name():
    """The runtime hands hf/torch artifacts to the commands registered under its entry-point group; none of
    its modules imports ``bertcompress`` (the upper package) itself."""
    import re
    from importlib.metadata import entry_points
    from pathlib import Path

    import bertcompress_runtime
    from bertcompress_runtime.cli import COMMANDS_GROUP

    for path in Path(bertcompress_runtime.__file__).parent.glob("*.py"):
        assert not re.search(r"^\s*(from|import) bertcompress(\.|\s|$)", path.read_text(), re.M), path.name
    registered = {ep.name: ep.value for ep in entry_points(group=COMMANDS_GROUP)}
    assert registered == {"predict": "bertcompress.cli:predict", "bench": "bertcompress.cli:bench"}
