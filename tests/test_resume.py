"""Resume after a real interruption: SIGTERM a fit after its first last.ckpt, run the same command again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import DATA_DIR, ROOT, requires_ubmec

pytestmark = [pytest.mark.slow, requires_ubmec]


def _cmd(tiny_bert_dir, cache, run_dir):
    return [
        sys.executable, str(ROOT / "train.py"), f"teacher.hub_id={tiny_bert_dir}", "teacher.name=tiny_bert",
        "teacher.epochs=12", "teacher.module.freeze_word_embeddings=false", "callbacks.early_stopping.patience=100",
        "data.limit_train=2048", "data.limit_val=64", "data.limit_test=64", "data.max_length=32", "data.batch_size=16",
        "logger=csv", "callbacks.progress_bar=null", "baseline=none", "benchmark.enabled=false",
        f"paths.data_dir={DATA_DIR}", f"paths.cache_dir={cache}", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip


def test_a_sigterm_fit_resumes_from_last_ckpt_and_matches_an_uninterrupted_run(tmp_path, tiny_bert_dir):
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    cache = tmp_path / "cache"
    proc = subprocess.Popen(_cmd(tiny_bert_dir, cache, tmp_path / "run1"), cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    last = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = list((cache / "partial" / "teachers").glob("*/last.ckpt"))
        if found:
            last = found[0]
            time.sleep(0.2)  # let the first write land whole (it is written to a temp name first)
            break
        time.sleep(0.05)
    assert last is not None, "no last.ckpt appeared"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, out[-2000:]
    assert not list((cache / "teachers").glob("*/cache.json")), out[-3000:]  # nothing cached from a partial fit
    interrupted_at = torch.load(last, map_location="cpu", weights_only=True)["epoch"]
    assert interrupted_at < 11

    resumed = subprocess.run(_cmd(tiny_bert_dir, cache, tmp_path / "run2"), cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming the interrupted fit from" in resumed.stdout + resumed.stderr
    r2 = json.loads((tmp_path / "run2" / "results.json").read_text())
    assert r2["teacher"]["cache_hit"] is False
    meta = json.loads(next((cache / "teachers").glob("*/cache.json")).read_text())["meta"]
    assert meta["epochs_run"] == 12  # the epoch count went on from the checkpoint, not from 0
    assert not last.parent.exists()  # the fit is whole and cached: the partial dir is gone

    fresh = subprocess.run(_cmd(tiny_bert_dir, tmp_path / "cache_b", tmp_path / "run3"), cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    r3 = json.loads((tmp_path / "run3" / "results.json").read_text())
    # per-epoch seeds and a (seed, epoch) data order: the resumed fit is the uninterrupted one
    assert r2["teacher"]["best_val_macro_f1"] == r3["teacher"]["best_val_macro_f1"]
    assert r2["teacher"]["test"]["per_class"] == r3["teacher"]["test"]["per_class"]
    assert r2["teacher"]["test"]["confusion_matrix"] == r3["teacher"]["test"]["confusion_matrix"]
