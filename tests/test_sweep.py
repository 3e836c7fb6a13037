"""Sweeps: a tiny multirun grid (one job per combination, caches hit, a failure recorded while the
others finish, a re-run skips finished jobs), the joblib launcher, and the launcher/search configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bertcompress import job_dirname, pipeline
from bertcompress.jobs import config_difference
from bertcompress.pipeline import metric_value
from tests.conftest import CONF_DIR, DATA_DIR, ROOT, compose, requires_ubmec


def _train_m(tmp: Path, overrides: list[str], sweep: str) -> subprocess.CompletedProcess:
    """``python train.py -m`` as a user runs it: the sweep dir and log dir left to the config (only the
    project root moved to ``tmp`` through $BERTCOMPRESS_ROOT), so it lands in ``_sweep_dir(tmp, sweep)``."""
    cmd = [
        sys.executable, str(ROOT / "train.py"), "-m", *overrides,
        f"paths.data_dir={DATA_DIR}", f"paths.cache_dir={tmp / 'cache'}", f"sweep_name={sweep}",
    ]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "BERTCOMPRESS_ROOT": str(tmp)}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)


def _sweep_dir(tmp: Path, sweep: str) -> Path:
    return tmp / "logs" / "debug" / "multiruns" / sweep  # logs/<task_name>/multiruns/<sweep_name>; debug=fdr


def _results(sweep_dir: Path) -> dict[str, dict]:
    """``"student+compression"`` -> results.json of that job."""
    out = {}
    for p in sweep_dir.glob("*/results.json"):
        r = json.loads(p.read_text())
        out[f"{r['config']['student']['name']}+{r['config']['compression']['name']}"] = {**r, "dir": p.parent.name}
    return out


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, tiny_bert_dir):
    """student {none, cnn} x compression {none, prune_structured}: cnn + structured pruning fails
    (structured pruning needs a transformer), the other three finish."""
    tmp = tmp_path_factory.mktemp("sweep")
    overrides = [
        "teacher=me5_small",  # the grid axis, fixed (the default grid would sweep hub teachers)
        f"teacher.hub_id={tiny_bert_dir}", "teacher.name=tiny_bert", "teacher.module.freeze_word_embeddings=false",
        "data.limit_train=64", "data.limit_val=32", "data.limit_test=48", "data.max_length=32", "data.batch_size=16",
        "logger=csv", "callbacks.progress_bar=null", "debug=fdr",
        "benchmark.n_runs=3", "benchmark.warmup=1", "benchmark.throughput_batches=1", "benchmark.throughput_batch_size=8",
        "student=none,cnn", "compression=none,prune_structured",
    ]  # fmt: skip
    first = _train_m(tmp, overrides, "grid")
    return tmp, overrides, first


@requires_ubmec
def test_multirun_runs_every_combination_records_the_failure_and_reuses_caches(sweep):
    tmp, _, proc = sweep
    assert proc.returncode == 1, proc.stderr[-3000:]  # the failed job did not stop the sweep, but fails the command
    assert "Sweep of 4 jobs: 3 finished, 0 skipped (finished before), 1 failed" in proc.stdout
    assert "Tables and figures: python report.py " in proc.stdout  # the next step, with the sweep dir
    assert "structured pruning needs a transformer" in proc.stdout.split("Sweep of 4 jobs")[1]
    results = _results(_sweep_dir(tmp, "grid"))
    assert set(results) == {"none+none", "cnn+none", "none+prune_structured", "cnn+prune_structured"}
    # readable, stable job dirs: the group choices plus a hash of the other overrides
    assert results["cnn+none"]["dir"].startswith("compression=none,debug=fdr,student=cnn,teacher=me5_small,")
    failed = results.pop("cnn+prune_structured")
    assert failed["status"] == "failed" and "structured pruning needs a transformer" in failed["error"]
    assert "Traceback" in failed["traceback"]
    assert all(r["status"] == "finished" for r in results.values())
    # the teacher is fine-tuned once, by the first job; the logits are computed once
    hits = sorted(r["teacher"]["cache_hit"] for r in results.values())
    assert hits == [False, True, True]
    assert results["cnn+none"]["student"]["logit_cache_hit"] is False
    assert failed["config"]["student"]["name"] == "cnn"
    teachers = list((tmp / "cache" / "teachers").iterdir())
    assert len(teachers) == 1


@pytest.mark.slow
@requires_ubmec
def test_rerunning_a_sweep_skips_finished_jobs_and_redoes_failed_ones(sweep):
    tmp, overrides, _ = sweep
    dirs = {k: r["dir"] for k, r in _results(_sweep_dir(tmp, "grid")).items()}
    before = {k: (_sweep_dir(tmp, "grid") / d / "results.json").stat().st_mtime_ns for k, d in dirs.items()}
    again = _train_m(tmp, overrides, "grid")
    assert again.returncode == 1, again.stderr[-3000:]  # the failed job failed again
    assert "Sweep of 4 jobs: 0 finished, 3 skipped (finished before), 1 failed" in again.stdout
    after = {k: (_sweep_dir(tmp, "grid") / d / "results.json").stat().st_mtime_ns for k, d in dirs.items()}
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"cnn+prune_structured"}  # only the failed job ran again
    assert "already finished" in again.stdout + again.stderr


@pytest.mark.slow
@requires_ubmec
def test_joblib_launcher_runs_two_jobs_in_parallel(sweep):
    tmp, overrides, _ = sweep
    grid = [o for o in overrides if not o.startswith(("student=", "compression="))]
    proc = _train_m(tmp, [*grid, "student=none", "compression=none,prune", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], "joblib")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = _results(_sweep_dir(tmp, "joblib"))
    assert set(results) == {"none+none", "none+prune"}
    assert all(r["status"] == "finished" and r["teacher"]["cache_hit"] for r in results.values())
    threads = {r["config"]["hardware"]["threads"] for r in results.values()}
    assert threads == {max(1, min(2, (os.cpu_count() or 1) // 2))}  # cores shared, not oversubscribed


def _hydra_compose(overrides):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="train", overrides=overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        return cfg


def test_default_sweep_is_the_papers_grid():
    sweeper = _hydra_compose([]).hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.bertcompress_sweeper.GridSweeper" and not sweeper.params
    params = sweeper.default_params
    assert params == {
        "teacher": "banglabert,mbert",
        "student": "none,distil_mbert_mini",
        "compression": "none,prune,quant,prune_quant",
    }
    offline = _hydra_compose(["experiment=offline_grid"])
    assert offline.hydra.sweeper.params.teacher == "me5_small"
    assert set(offline.hydra.sweeper.params.student.split(",")) == {"none", "teacher_6l", "bilstm", "cnn", "ensemble"}
    assert offline.hydra.sweep.dir.endswith("offline_grid")  # a stable dir: re-running resumes it
    paper = _hydra_compose(["experiment=paper_grid"]).hydra.sweeper.params
    assert len(paper.student.split(",")) == 5 and len(paper.teacher.split(",")) == 2
    ner = _hydra_compose(["experiment=ner_grid"])
    assert ner.task.name == "ner" and ner.data.name == "conll2003" and ner.callbacks.early_stopping.monitor == "val/f1"
    assert ner.hydra.sweeper.params.student == "none,teacher_6l,bilstm" and ner.optimized_metric == "val/f1"
    grid = _hydra_compose(["experiment=teacher_grid"]).hydra.sweeper.params
    sizes = [len(str(v).split(",")) for v in grid.values()]
    assert grid["+teacher.module.layer_lr_decay"] == "1.0,0.85" and sizes.count(2) == 4  # 16 teacher recipes
    assert grid.student == "none" and grid.compression == "none" and sizes.count(1) == 3


def test_preflight_stops_a_sweep_whose_models_or_configs_cannot_be_had(tmp_path):
    """One message before any job starts: the hub teacher that cannot be had offline and the jobs with T=0.
    4 jobs, not the 64 that mixing in the default grid (student x compression) would give."""
    proc = _train_m(tmp_path, ["teacher=banglabert,me5_small", "student=cnn", "student.loss.temperature=0,2"], "pre")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "The sweep was not started: 4 jobs were checked" in proc.stderr
    assert "csebuetnlp/banglabert (teacher, 2 job(s))" in proc.stderr and "teacher=me5_small" in proc.stderr
    assert "me5" not in proc.stderr.split("cannot be had here:")[1].split("Drop them")[0]
    assert proc.stderr.count("ValueError: student.loss.temperature=0: the temperature T must be > 0") == 2
    assert not _sweep_dir(tmp_path, "pre").exists() or not list(_sweep_dir(tmp_path, "pre").glob("*/results.json"))


def test_submitit_ddp_and_optuna_configs_compose(tmp_path):
    slurm = _hydra_compose(["hydra/launcher=slurm", "hydra.launcher.partition=gpu"]).hydra.launcher
    assert slurm._target_.endswith("SlurmLauncher") and slurm.partition == "gpu" and slurm.timeout_min == 120
    assert _hydra_compose(["hydra/launcher=submitit_slurm"]).hydra.launcher._target_.endswith("SlurmLauncher")
    ddp = compose(["hardware=ddp", "hardware.devices=4"], tmp_path)
    assert ddp.trainer.strategy == "ddp" and ddp.trainer.devices == 4 and ddp.trainer.accelerator == "gpu"
    optuna = _hydra_compose(["hparams_search=optuna", "student=bilstm"])
    assert optuna.hydra.sweeper._target_.endswith("OptunaSweeper") and optuna.optimized_metric == "val/macro_f1"
    params = optuna.hydra.sweeper.params
    for key in ("student.loss.temperature", "student.loss.alpha", "student.optimizer.lr", "compression.pruning.amount"):
        assert key in params
    assert optuna.student.name == "bilstm" and optuna.hydra.sweeper.direction == "maximize"


def test_threads_per_job_share_the_cores(tmp_path):
    cfg = compose(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], tmp_path)
    assert cfg.hardware.threads == max(1, min(2, (os.cpu_count() or 1) // 2))
    assert compose([], tmp_path).hardware.threads == 2


def test_metric_value_reads_the_validation_figure():
    results = {"status": "finished", "macro_f1": 40.0, "final_val": {"macro_f1": 45.0}}
    assert metric_value(results, "val/macro_f1") == 45.0 and metric_value(results, "macro_f1") == 40.0
    assert metric_value({"status": "failed"}, "val/macro_f1") != metric_value({"status": "failed"}, "val/macro_f1")
    with pytest.raises(KeyError, match="optimized_metric"):
        metric_value(results, "val/nonsense")


def test_job_dirname_keeps_appended_overrides_apart():
    """The teacher grid sweeps ``+teacher.module.layer_lr_decay``: each value needs its own job dir (the
    old name dropped every ``+`` override, so a rerun skipped the 1.0 point as the finished 0.85 one)."""
    grid = ["teacher=me5_small", "student=none", "data.max_length=64", "experiment=teacher_grid", "logger=csv"]
    off, on = (job_dirname([*grid, f"+teacher.module.layer_lr_decay={v}"]) for v in ("1.0", "0.85"))
    assert (off, on) == tuple(
        f"student=none,teacher=me5_small,max_length=64,layer_lr_decay={v}" for v in ("1.0", "0.85")
    )
    assert on == job_dirname([*grid, "teacher.module.layer_lr_decay=0.85"])  # + names the dir like key=v
    assert job_dirname([*grid, "++teacher.module.layer_lr_decay=0.85"]) == on
    assert off != job_dirname(grid) != job_dirname([*grid, "~teacher.members.tfidf_lr"])
    # where things are written and logged never names a dir, with or without +
    assert job_dirname([*grid, "+paths.log_dir=/elsewhere", "logger=wandb", "+sweep_name=x"]) == job_dirname(grid)
    assert job_dirname(["+augment=tang2019", "student=cnn"]) == "augment=tang2019,student=cnn"


def test_job_dirname_shows_every_swept_value_and_hashes_only_what_does_not_fit():
    base = ["compression=prune", "student=cnn"]
    names = [job_dirname([*base, f"compression.pruning.amount={v}"]) for v in ("0.3", "1.5")]
    assert names == ["compression=prune,student=cnn,amount=0.3", "compression=prune,student=cnn,amount=1.5"]
    two_lrs = job_dirname([*base, "student.optimizer.lr=2e-3", "teacher.module.optimizer.lr=1e-4"])
    assert two_lrs == "compression=prune,student=cnn,student.optimizer.lr=2e-3,module.optimizer.lr=1e-4"
    path = job_dirname([*base, "teacher.hub_id=/a/very/long/path/to/a/local/model/dir/of/the/user"])
    assert path.startswith("compression=prune,student=cnn,hub_id=#") and "/" not in path
    many = [*base, *(f"student.model.k{i}={'x' * 30}" for i in range(12))]
    name = job_dirname(many)
    assert len(name) <= 200 and "k0=" + "x" * 30 in name and "+" in name  # the rest hashed
    assert job_dirname(many) == name != job_dirname([*many[:-1], "student.model.k11=y"])


def test_config_difference_names_the_first_result_deciding_key(tmp_path):
    from omegaconf import OmegaConf

    cfg = compose(["student=cnn"], tmp_path)
    recorded = OmegaConf.to_container(cfg, resolve=True)
    assert config_difference(recorded, cfg) is None
    moved = {**recorded, "paths": {**recorded["paths"], "log_dir": "/elsewhere"}, "logger": None}
    assert config_difference(moved, cfg) is None  # where it wrote or logged does not decide the result
    epochs = compose(["student=cnn", "teacher.epochs=5"], tmp_path)
    assert config_difference(recorded, epochs) == "teacher.epochs: 3 -> 5"
    llrd = compose(["student=cnn", "+teacher.module.layer_lr_decay=0.85"], tmp_path)
    assert config_difference(recorded, llrd) == "teacher.module.layer_lr_decay: '<missing>' -> 0.85"
    # a key added to the configs since, with a null default, does not invalidate an older result
    older = {**recorded, "student": {k: v for k, v in recorded["student"].items() if k != "class_bias"}}
    assert cfg.student.class_bias is None and config_difference(older, cfg) is None


def test_run_job_reuses_a_finished_result_only_for_the_same_config(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    cfg = compose(["student=cnn"], tmp_path)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True)
    ran = []
    monkeypatch.setattr(pipeline, "run", lambda c: ran.append(c.teacher.epochs) or {"status": "finished", "ran": True})
    recorded = {"status": "finished", "macro_f1": 50.0, "config": OmegaConf.to_container(cfg, resolve=True)}
    (out / "results.json").write_text(json.dumps(recorded))
    assert pipeline.run_job(cfg)["skipped"] is True and ran == []
    other = compose(["student=cnn", "teacher.epochs=5"], tmp_path)
    assert pipeline.run_job(other) == {"status": "finished", "ran": True} and ran == [5]


@pytest.mark.slow
@requires_ubmec
def test_a_sweep_through_submitit_local_writes_both_results_and_the_report_reads_them(tmp_path, tiny_bert_dir):
    """``hydra/launcher=submitit_local``: submitit's own path (the one SLURM takes), executed as local jobs."""
    overrides = [
        "teacher=me5_small", f"teacher.hub_id={tiny_bert_dir}", "teacher.name=tiny_bert",
        "teacher.module.freeze_word_embeddings=false", "data.limit_train=64", "data.limit_val=32",
        "data.limit_test=48", "data.max_length=32", "data.batch_size=16", "logger=csv",
        "callbacks.progress_bar=null", "debug=fdr", "benchmark.enabled=false", "student=cnn",
        "compression=none", "student.seed=1,2", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
    ]  # fmt: skip
    proc = _train_m(tmp_path, overrides, "submitit")
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep_dir = _sweep_dir(tmp_path, "submitit")
    results = [json.loads(p.read_text()) for p in sweep_dir.glob("*/results.json")]
    assert sorted(r["config"]["student"]["seed"] for r in results) == [1, 2]
    assert all(r["status"] == "finished" for r in results)
    assert len(list(sweep_dir.glob(".submitit/*/*_result.pkl"))) == 2  # submitit ran and collected both jobs
    import pandas as pd

    from bertcompress.cli import report

    assert report([str(sweep_dir)]) == 0
    summary = pd.read_csv(sweep_dir / "report" / "summary.csv")
    row = summary[summary["student"] == "cnn"]
    assert len(row) == 1 and int(row["n_seeds"].iloc[0]) == 2


def test_preflight_looks_up_a_hub_dataset_like_a_hub_model(tmp_path, monkeypatch):
    import datasets

    from bertcompress.sweep import preflight

    def not_here(path, name=None):
        raise ConnectionError(f"Couldn't reach {path!r} on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset_builder", not_here)
    (tmp_path / "saved").mkdir()
    configs = [
        _hydra_compose(["data=hf", f"data.path={name}", f"paths.data_dir={tmp_path}"])
        for name in ("someone/bengali_corpus", str(tmp_path / "saved"))
    ]
    message = preflight(configs)
    assert "someone/bengali_corpus (data, 1 job(s)): not on the Hub nor in the HF cache" in message
    assert str(tmp_path / "saved") not in message.split("cannot be had here:")[1].split("Drop them")[0]
