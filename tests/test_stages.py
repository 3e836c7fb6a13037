"""Each stage called directly (no run()), with tiny models built from configs and a tiny real UBMEC slice;
the one cache abstraction; datamodule views that never change the datamodule."""

from __future__ import annotations

import json

import hydra
import lightning as L
import pytest

from bertcompress.jobs import finished_result, record_failure
from bertcompress.stages.compress import compress_final, student_final, teacher_final
from bertcompress.stages.evaluate import evaluate_artifact
from bertcompress.stages.student import run_student
from bertcompress.stages.teacher import get_teacher, teacher_test_metrics
from bertcompress.utils.cache import cache_uses, load_or_build, reset_cache_uses
from tests.conftest import compose, requires_ubmec


def test_load_or_build_builds_once_records_each_use_and_never_leaves_half_an_entry(tmp_path):
    calls = []

    def build(d):
        calls.append(d)
        (d / "value.txt").write_text("42")
        return {"built": True}

    def load(d):
        return (d / "value.txt").read_text()

    reset_cache_uses()
    first, use1 = load_or_build(tmp_path, "things", "x", {"a": 1}, build, load)
    second, use2 = load_or_build(tmp_path, "things", "x", {"a": 1}, build, load)
    assert first == second == "42" and len(calls) == 1 and (use1.cache_hit, use2.cache_hit) == (False, True)
    assert json.loads((tmp_path / use1.path / "cache.json").read_text())["meta"] == {"built": True}
    assert [u["cache_hit"] for u in cache_uses()] == [False, True] and cache_uses()[0]["key"] == {"a": 1}
    other, use3 = load_or_build(tmp_path, "things", "x", {"a": 2}, build, load)  # another key, another entry
    assert use3.path != use1.path and len(calls) == 2

    def broken(d):
        (d / "half").write_text("x")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        load_or_build(tmp_path, "things", "x", {"a": 3}, broken, load)
    assert len(list((tmp_path / "things").iterdir())) == 2  # nothing of the interrupted build
    value, use4 = load_or_build(tmp_path, "things", "y", {"a": 1}, build, load, store=False)
    assert value == "42" and not use4.cache_hit and not (tmp_path / "things" / use4.path).exists()


@pytest.fixture
def tiny(tmp_path, tiny_run_overrides):
    cfg = compose([*tiny_run_overrides, "student=cnn", "student.epochs=1", "compression=quant_static"], tmp_path)
    dm = hydra.utils.instantiate(cfg.data)
    dm.setup()
    return cfg, dm


@requires_ubmec
def test_teacher_stage_fine_tunes_once_and_its_test_metrics_are_reused(tiny, monkeypatch):
    cfg, dm = tiny
    teacher = get_teacher(cfg, dm, [])
    assert not teacher.cache_hit and teacher.train_time_s > 0 and teacher.meta["label_names"] == dm.labels
    test = teacher_test_metrics(teacher, dm, cfg, [])
    assert test["n"] == 48 and "from_cache" not in test
    monkeypatch.setattr(L.Trainer, "fit", lambda *a, **k: pytest.fail("the teacher was fine-tuned again"))
    again = get_teacher(cfg, dm, [])
    assert again.cache_hit and again.cache_dir == teacher.cache_dir and again.train_time_s == 0.0
    reused = teacher_test_metrics(again, dm, cfg, [])
    assert reused["from_cache"] is True and reused["macro_f1"] == test["macro_f1"]
    assert dm.encoder is None and dm.transfer is None  # the stage worked on its own view


@requires_ubmec
def test_student_compress_and_evaluate_stages_called_directly(tiny, tmp_path, tiny_run_overrides):
    cfg, dm = tiny
    teacher = get_teacher(cfg, dm, [])
    student = run_student(cfg, dm, teacher, [])
    block = student.block
    assert block["cache_hit"] is False and block["kind"] == "static" and block["test"]["n"] == 48
    assert block["loss"] == {"mode": "kl", "temperature": 2.0, "alpha": 0.5}
    again = run_student(cfg, dm, teacher, [])
    assert again.block["cache_hit"] is True and again.block["test"]["macro_f1"] == block["test"]["macro_f1"]
    assert dm.encoder is None and dm.max_length == 32
    compressed = compress_final(cfg, dm, student_final(cfg, dm, student), tmp_path / "artifact")
    assert compressed.report["quantization"]["mode"] == "static" and (compressed.artifact / "model.onnx").is_file()
    evaluation = evaluate_artifact(cfg, dm, tmp_path / "artifact", teacher, block["test"])
    out = evaluation.results
    assert out["benchmark"]["format"] == "onnx" and out["speedup"] > 0 and out["size_mb"] > 0
    assert out["baseline"]["name"] == "tfidf_lr" and isinstance(out["beats_baseline"], bool)
    assert evaluation.final_test["n"] == 48 and out["final_val"]["n"] == 32
    none = compose([*tiny_run_overrides, "compression=none"], tmp_path)
    fp32 = compress_final(none, dm, teacher_final(none, dm, teacher), tmp_path / "t")
    assert fp32.report["quantization"] is None and (fp32.artifact / "model.safetensors").is_file()


def test_results_stage_skips_a_finished_job_of_the_same_config_and_records_failures(tmp_path):
    cfg = compose(["logger=csv"], tmp_path)
    assert finished_result(cfg) is None
    failed = record_failure(cfg, ValueError("boom"))
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert failed["status"] == on_disk["status"] == "failed" and "ValueError: boom" in on_disk["error"]
    assert finished_result(cfg) is None  # a failed job runs again
    from omegaconf import OmegaConf

    done = {"status": "finished", "config": OmegaConf.to_container(cfg, resolve=True), "macro_f1": 1.0}
    (tmp_path / "run" / "results.json").write_text(json.dumps(done))
    assert finished_result(cfg)["skipped"] is True
    other = compose(["logger=csv", "seed=7"], tmp_path)
    assert finished_result(other) is None  # a finished result of another config is not reused


@requires_ubmec
def test_a_view_never_changes_the_datamodule(tiny, tiny_bert_dir):
    from transformers import AutoTokenizer

    from bertcompress.data.encoding import TextEncoder

    _, dm = tiny
    encoder = TextEncoder(AutoTokenizer.from_pretrained(tiny_bert_dir), 16)
    view = dm.view(encoder, max_length=24, transfer=([90_000_001, 90_000_002], ["এক", "দুই"]))
    assert view.encoder is encoder and view.max_length == 24 and view.texts("transfer") == ["এক", "দুই"]
    assert len(view.train_dataloader().dataset) == 64 + 2
    assert dm.encoder is None and dm.max_length == 32 and dm.transfer is None and dm.texts("transfer") == []
    with pytest.raises(ValueError, match="collide with corpus example ids"):
        dm.view(encoder, transfer=([dm.ids("train")[0]], ["x"]))
