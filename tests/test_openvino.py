"""The OpenVINO backend: NNCF int8 and float IR artifacts of a tiny transformer and a static student, run by
the torch-free runtime (with its openvino extra) in a subprocess where torch cannot be imported, agree with
the torch path; the runtime says what to install when OpenVINO is missing; the precision it ran in is
reported."""

from __future__ import annotations

import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from tests.test_runtime import BLOCKER, run_without_torch

pytest.importorskip("openvino")
pytest.importorskip("nncf")


def _config(mode: str, precision: str = "f32"):
    return OmegaConf.create(
        {
            "name": f"openvino-{mode}",
            "pruning": None,
            "quantization": {
                "_target_": "bertcompress.compression.steps.PostTrainingQuantization",
                "mode": mode,
                "backend": "openvino",
                "calibration_batches": 4,
                "inference_precision": precision,
            },
        }
    )


@pytest.fixture(scope="module")
def ov_artifacts(tmp_path_factory, tiny_bert_dir, ubmec_texts):
    """{name: (fp32 source artifact, openvino artifact, int8?)}."""
    from bertcompress.compression.apply import compress_and_save
    from tests.test_artifacts import _static_final
    from tests.test_compression import _final_model, load_artifact_batches

    root = tmp_path_factory.mktemp("openvino")
    none = OmegaConf.create({"name": "none", "pruning": None, "quantization": None})
    out = {}
    for kind, final in (
        ("teacher", _final_model(tiny_bert_dir)),
        ("cnn", _static_final("cnn", tiny_bert_dir, ubmec_texts[:200])),
    ):
        batches = load_artifact_batches(final, ubmec_texts[:64])
        compress_and_save(final, none, root / f"{kind}_src", calibration_loader=None)
        for mode in ("static", "fp32") if kind == "cnn" else ("static",):
            compress_and_save(final, _config(mode), root / f"{kind}_{mode}", calibration_loader=batches)
            out[f"{kind}_{mode}"] = (root / f"{kind}_src", root / f"{kind}_{mode}", mode == "static")
    return out


@pytest.mark.parametrize("name", ["teacher_static", "cnn_static", "cnn_fp32"])
def test_an_openvino_artifact_classifies_without_torch_like_the_torch_path(name, ov_artifacts, ubmec_texts, tmp_path):
    from bertcompress.artifacts import load_artifact

    src, art, int8 = ov_artifacts[name]
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["format"] == "openvino" and manifest["weights"] == "model.bin" and (art / "model.xml").is_file()
    texts = ubmec_texts[300:340]
    (tmp_path / "texts.json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    proc = run_without_torch(
        f"""
        import json
        from bertcompress_runtime import load
        m = load({str(art)!r}, threads=1)
        texts = json.load(open({str(tmp_path / "texts.json")!r}, encoding="utf-8"))
        json.dump({{"p": m.predict_proba(texts).tolist(), "execution": m.execution}}, open({str(tmp_path / "p.json")!r}, "w"))
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads((tmp_path / "p.json").read_text())
    runtime, reference = np.array(got["p"]), load_artifact(src).predict_proba(texts)
    assert got["execution"] == {"backend": "openvino", "precision": "f32", "quantization": manifest["compression"][
        "quantization"]["mode"]}  # fmt: skip
    assert runtime.shape == (40, 6)
    if int8:  # NNCF int8 against the fp32 torch module: quantization noise only, and each text its own logits
        assert np.abs(runtime - reference).max() < 0.05

        def centred(p):  # logits up to a per-text constant
            z = np.log(p)
            return (z - z.mean(1, keepdims=True)).ravel()

        assert np.corrcoef(centred(runtime), centred(reference))[0, 1] > 0.95
    else:
        assert np.abs(runtime - reference).max() < 1e-4
    if int8 and name.startswith("teacher"):
        report = json.loads((art / "manifest.json").read_text())
        assert report["openvino"]["inference_precision"] == "f32"


def test_the_runtime_without_openvino_says_what_to_install(ov_artifacts):
    _, art, _ = ov_artifacts["cnn_static"]
    blocker = BLOCKER.replace('"lightning"}', '"lightning", "openvino"}')
    import subprocess
    import sys
    import textwrap

    code = blocker + textwrap.dedent(
        f"""
        from bertcompress_runtime import load
        try:
            load({str(art)!r})
        except ImportError as e:
            print("ERR", e)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "ERR" in proc.stdout and "bertcompress-runtime[openvino]" in proc.stdout, proc.stderr[-2000:]


def test_bf16_precision_is_what_the_plugin_reports(ov_artifacts, tiny_bert_dir, ubmec_texts, tmp_path):
    """``inference_precision: auto`` is the plugin's default: bf16 where the CPU has AMX or AVX-512 BF16, f32
    elsewhere; the predictor reports what the compiled model runs, not what was asked."""
    from bertcompress.artifacts import load_artifact
    from bertcompress.benchmark.machine import machine_info
    from bertcompress.compression.apply import compress_and_save
    from tests.test_compression import _final_model, load_artifact_batches

    final = _final_model(tiny_bert_dir)
    compress_and_save(final, _config("fp32", "auto"), tmp_path / "a", load_artifact_batches(final, ubmec_texts[:16]))
    flags = machine_info()["cpu_flags"]
    expect = "bf16" if (flags.get("amx") or flags.get("avx512_bf16")) else "f32"
    assert load_artifact(tmp_path / "a").execution["precision"] == expect


def test_an_openvino_graph_linked_out_of_the_dir_is_refused(ov_artifacts, tmp_path):
    import shutil

    from bertcompress_runtime.manifest import ArtifactError, read_manifest

    _, art, _ = ov_artifacts["cnn_fp32"]
    copy = tmp_path / "copy"
    shutil.copytree(art, copy)
    (copy / "model.xml").unlink()
    (copy / "model.xml").symlink_to(art / "model.xml")
    with pytest.raises(ArtifactError, match="symlink that leads out"):
        read_manifest(copy)
    (copy / "model.xml").unlink()
    with pytest.raises(ArtifactError, match="model.xml"):
        read_manifest(copy)


def test_the_openvino_backend_refuses_what_it_cannot_do():
    from bertcompress.compression.quant_config import QuantizationError
    from bertcompress.compression.quantization import Quantizer

    with pytest.raises(QuantizationError, match="openvino"):
        Quantizer("dynamic", "openvino")
    with pytest.raises(QuantizationError, match="fp32"):
        Quantizer("fp32", "onnxruntime")
    with pytest.raises(ValueError, match="inference_precision"):
        Quantizer("static", "openvino", inference_precision="f16")
