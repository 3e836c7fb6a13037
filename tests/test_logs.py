"""Log noise: exactly the known third-party lines are dropped; user-input errors end a run with one line."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

import bertcompress  # noqa: F401  (installs the filters)
from tests.conftest import ROOT


def _emitted(logger: str, message: str, caplog) -> bool:
    """Whether ``message`` logged at ``logger`` reaches a handler of that logger (whatever its propagation)."""
    target = logging.getLogger(None if logger == "root" else logger)
    caplog.clear()
    target.addHandler(caplog.handler)
    try:
        target.warning(message)
    finally:
        target.removeHandler(caplog.handler)
    return message in caplog.text


@pytest.mark.parametrize(
    "logger, message",
    [
        ("torchao", "Failed to load /site-packages/torchao/_C_mxfp8.cpython-310-x86_64-linux-gnu.so: Could not load"),
        (
            "torchao.kernel.intmm",
            "Warning: Detected no triton, on systems without Triton certain kernels will not work",
        ),
        ("torch.utils._pytree", "<enum 'KernelPreference'> is an Enum subclass and is now natively supported by torch"),
        ("lightning.pytorch.utilities.rank_zero", "💡 Tip: For seamless cloud logging and experiment tracking, try"),
        ("root", "Please consider to run pre-processing before quantization. Refer to example: https://x"),
    ],
)
def test_known_noise_is_dropped_but_the_same_text_from_this_project_is_kept(logger, message, caplog):
    assert not _emitted(logger, message, caplog)
    assert _emitted("bertcompress.pipeline", message, caplog)  # never this project's own lines
    assert _emitted(logger, "Failed to quantize layer 3: a real problem", caplog)  # other lines of that logger


def test_a_load_report_is_dropped_only_when_it_lists_unexpected_head_keys(caplog):
    head = "\x1b[1mBertModel LOAD REPORT\x1b[0m from: /x\nKey | Status |\n---\nclassifier.bias | UNEXPECTED |\n"
    head += "classifier.weight | UNEXPECTED |\n"
    assert not _emitted("transformers.modeling_utils", head, caplog)
    missing = "BertForSequenceClassification LOAD REPORT from: /x\nKey | Status |\nbert.pooler.dense.bias | MISSING |\n"
    assert _emitted("transformers.modeling_utils", missing, caplog)


@pytest.mark.slow  # a subprocess or notebook run; `make test-full`
def test_a_data_error_ends_train_py_with_one_line_and_the_traceback_in_the_log(tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, str(ROOT / "train.py"), "data=csv", f"data.train_file={tmp_path / 'nope.csv'}", "logger=csv",
           f"hydra.run.dir={tmp_path / 'run'}", f"paths.cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: FileNotFoundError: Data file not found:") and "data.train_file=" in lines[-1]
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output and "HYDRA_FULL_ERROR" not in output
    for noise in ("_C_mxfp8", "Detected no triton", "is an Enum subclass", "💡 Tip", "anonymous setting"):
        assert noise not in output
    log = (tmp_path / "run" / "train.log").read_text()
    assert "Traceback" in log and "read_table" in log


@pytest.mark.slow  # a subprocess or notebook run; `make test-full`
def test_predict_on_an_onnx_artifact_does_not_import_torchao(tmp_path, tiny_bert_dir, ubmec_texts):
    from omegaconf import OmegaConf

    from bertcompress.compression.apply import compress_and_save
    from tests.test_compression import _final_model, load_artifact_batches

    final = _final_model(tiny_bert_dir)
    batches = [
        {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]}
        for b in load_artifact_batches(final, ubmec_texts[:8])
    ]
    q = {
        "_target_": "bertcompress.compression.steps.PostTrainingQuantization",
        "mode": "dynamic",
        "backend": "onnxruntime",
        "quantize_embeddings": True,
    }
    compress_and_save(
        final, OmegaConf.create({"name": "q", "pruning": None, "quantization": q}), tmp_path / "art", batches
    )
    code = (
        "import sys; from bertcompress.cli import predict; rc = predict([sys.argv[1], 'আমি আজ খুব খুশি']); "
        "print('torchao imported' if 'torchao' in sys.modules else 'no torchao'); sys.exit(rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "art")], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("no torchao") and "\t" in proc.stdout
