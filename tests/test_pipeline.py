"""End to end on tiny models and a tiny real UBMEC slice: fit, test, results.json, cache reuse, W&B offline."""

from __future__ import annotations

import json
import time

import lightning as L
import pytest

from bertcompress.pipeline import run
from tests.conftest import compose, requires_ubmec

pytestmark = requires_ubmec


def test_fast_dev_run_fit_and_test_writes_results(tmp_path, tiny_run_overrides):
    cfg = compose([*tiny_run_overrides, "debug=fdr"], tmp_path)
    results = run(cfg)
    path = tmp_path / "run" / "results.json"
    on_disk = json.loads(path.read_text())
    assert on_disk["macro_f1"] == results["macro_f1"]
    test = on_disk["teacher"]["test"]
    assert test["n"] == 48  # fast_dev_run: one test batch (eval_batch_size 64 holds the whole 48-row slice)
    assert set(test["per_class"]) == {"anger", "disgust", "fear", "joy", "sadness", "surprise"}
    assert set(test["per_class"]["joy"]) == {"precision", "recall", "f1", "support"}
    cm = test["confusion_matrix"]
    assert len(cm) == 6 and sum(map(sum, cm)) == test["n"]
    assert on_disk["params"] == on_disk["teacher"]["params"]["total"] > 0
    assert on_disk["config"]["teacher"]["name"] == "tiny_bert"
    assert 0 <= on_disk["accuracy"] <= 100
    assert not list(tmp_path.glob("run/.results.json.*"))  # no temp file left behind
    from bertcompress.schema import RunResults

    parsed = RunResults.from_json(on_disk)  # the schema the report reads: every key known, nothing lost
    assert parsed.extra == {} and parsed.to_json() == on_disk


def test_electra_teacher_runs(tmp_path, tiny_run_overrides, tiny_electra_dir):
    overrides = [o for o in tiny_run_overrides if not o.startswith("teacher.hub_id")]
    cfg = compose(
        [
            *overrides,
            f"teacher.hub_id={tiny_electra_dir}",
            "teacher.name=tiny_electra",
            "teacher.module.pooling=cls",
            "debug=fdr",
        ],
        tmp_path,
    )
    results = run(cfg)
    assert results["teacher"]["params"]["total"] > 0 and results["teacher"]["test"]["n"] > 0


def _assert_logged_as_written(run_dir, results: dict) -> None:
    """The CSV log (what W&B gets too) holds macro-F1 and accuracy in results.json's unit, percent."""
    import pandas as pd

    assert results["metric_unit"] == "percent"
    frames = [pd.read_csv(p) for p in sorted(run_dir.glob("csv/*/metrics.csv"))]
    logged = pd.concat(frames, ignore_index=True)
    val = logged["val/macro_f1"].dropna()
    assert results["teacher"]["best_val_macro_f1"] == pytest.approx(val.max(), abs=1e-3)
    test = results["teacher"]["test"]
    assert test["accuracy"] > 1.0  # at least one of the 48 right: a fraction would be below 1
    assert logged["test/acc"].dropna().iloc[-1] == pytest.approx(test["accuracy"], abs=1e-3)


def test_second_run_reuses_the_cached_teacher(tmp_path, tiny_run_overrides, monkeypatch):
    cfg = compose(tiny_run_overrides, tmp_path)
    first = run(cfg)
    assert first["teacher"]["cache_hit"] is False and first["teacher"]["train_time_s"] > 0
    cache_dir = first["teacher"]["model_dir"]
    _assert_logged_as_written(tmp_path / "run", first)
    assert (tmp_path / "cache" / "teachers").is_dir() and cache_dir.startswith(str(tmp_path / "cache" / "teachers"))

    def no_fit(*args, **kwargs):
        raise AssertionError("the teacher was trained again")

    monkeypatch.setattr(L.Trainer, "fit", no_fit)
    second = run(compose(tiny_run_overrides, tmp_path))
    assert second["teacher"]["cache_hit"] is True and second["teacher"]["model_dir"] == cache_dir
    assert second["macro_f1"] == pytest.approx(first["macro_f1"])  # the same saved weights
    # every cache use is recorded in results.json, with its key
    uses = {u["kind"]: u for u in second["caches"]}
    assert uses["teachers"]["cache_hit"] is True and uses["teachers"]["path"] == cache_dir
    assert uses["teachers"]["key"]["teacher"]["name"] == "tiny_bert" and uses["baselines"]["cache_hit"] is True
    assert {u["kind"]: u["cache_hit"] for u in first["caches"]}["teachers"] is False
    # a changed hyper-parameter is a different teacher
    monkeypatch.undo()
    third = run(compose([*tiny_run_overrides, "teacher.module.optimizer.lr=1e-3"], tmp_path))
    assert third["teacher"]["cache_hit"] is False and third["teacher"]["model_dir"] != cache_dir


def test_wandb_offline_writes_a_run_dir(tmp_path, tiny_run_overrides, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "run"))
    overrides = [o for o in tiny_run_overrides if o != "logger=csv"]
    limits = ["trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"]
    run(compose([*overrides, *limits, "logger=wandb", "logger.wandb.log_model=true"], tmp_path))
    runs = list((tmp_path / "run").rglob("offline-run-*"))
    assert runs, "no W&B offline run dir was written"
    assert list(runs[0].glob("*.wandb"))
    assert (tmp_path / "run" / "csv").is_dir()  # the CSV logger runs beside it
    # offline, the summary and the artifact manifest live in the run's .wandb record file
    record_file = next(runs[0].glob("*.wandb"))
    deadline = time.monotonic() + 60  # W&B's service may still be flushing the record file on a busy machine
    while b"final_test/macro_f1" not in record_file.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.5)
    record = record_file.read_bytes()
    assert b"benchmark/latency_ms/p50" in record and b"final_test/macro_f1" in record
    assert b"manifest.json" in record and b"model.safetensors" in record  # the final artifact, log_model=true
    assert list((runs[0] / "files" / "media" / "images" / "test").glob("confusion_matrix*.png"))
    assert b"teacher:tiny_bert" in record and b"seed:42" in record  # the run's tags
    from bertcompress.report.tracking import finished_offline_runs

    assert finished_offline_runs(tmp_path / "run") == runs  # what the README's `wandb sync $(...)` uploads
    assert any("per_class" in str(p) for p in (runs[0] / "files").rglob("*.table.json"))


@requires_ubmec
def test_without_the_benchmark_the_headline_is_still_the_reloaded_artifacts(tmp_path, tiny_run_overrides):
    """benchmark.enabled=false: final_test scores the compressed artifact from disk, not the fp32 student."""
    import hydra

    from bertcompress.artifacts import load_artifact
    from bertcompress.metrics import classification_metrics
    from bertcompress.pipeline import run

    cfg = compose(
        [*tiny_run_overrides, "debug=fdr", "student=cnn", "compression=quant_onnx", "benchmark.enabled=false"], tmp_path
    )
    results = run(cfg)
    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare_data()
    dm.setup()
    predictor = load_artifact(
        results["artifact"] if isinstance(results["artifact"], str) else tmp_path / "run" / "artifact"
    )
    expected = classification_metrics(dm.label_ids("test"), predictor.predict_labels(dm.texts("test")), dm.labels)
    assert results["final_test"]["macro_f1"] == pytest.approx(expected["macro_f1"])
    assert results["macro_f1"] == pytest.approx(expected["macro_f1"])


def test_out_of_domain_sets_score_artifact_teacher_and_floor_as_bench_label_map_does(tmp_path, tiny_run_overrides):
    """``data.eval_sets.banemo_dev`` (on for UBMEC): the reloaded artifact, the fp32 teacher and the floor on
    its first rows through the label map; the artifact's figures equal ``bench --label-map`` on those rows."""
    from bertcompress_runtime.labelmap import evaluate, read_label_map

    from bertcompress.artifacts import load_artifact
    from bertcompress.stages.eval_sets import _read, eval_set_specs

    cfg = compose([*tiny_run_overrides, "benchmark.enabled=false"], tmp_path)
    results = run(cfg)
    block = results["eval_sets"]["banemo_dev"]
    spec = eval_set_specs(cfg)["banemo_dev"]
    assert spec["limit"] == 48 and block["n"] + block["dropped"] == 48  # as many rows as the test split's limit
    assert sorted(block["classes"]) == ["anger", "disgust", "fear", "joy", "sadness", "surprise"]
    assert set(block["per_class"]["joy"]) == {"precision", "recall", "f1", "support"}
    assert block["retention"] == pytest.approx(block["macro_f1"] / block["teacher"]["macro_f1"])
    assert block["baseline"]["n"] == block["teacher"]["n"] == block["n"]
    texts, labels = _read(spec)
    lmap = read_label_map(spec["label_map"], list(results["teacher"]["test"]["per_class"]))
    again = evaluate(load_artifact(results["artifact"]).predict_proba(texts), labels, lmap, spec["path"])
    assert again["macro_f1"] == pytest.approx(block["macro_f1"]) and again["per_class"] == block["per_class"]
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["eval_sets"]["banemo_dev"]["macro_f1"] == block["macro_f1"]
    cfg_off = compose([*tiny_run_overrides, "benchmark.enabled=false", "data.eval_sets.banemo_dev=null"], tmp_path)
    assert run(cfg_off).get("eval_sets", {}) == {}
