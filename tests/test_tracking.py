"""W&B runs a user can filter: tags every run carries, names with the student seed, failed runs closed
as failed; and the set-up command's torch index."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import ROOT, compose


def test_every_run_is_tagged_and_experiments_add_tags(tmp_path):
    cfg = compose(["student=cnn", "student.seed=3", "compression=quant_static", "experiment=smoke"], tmp_path)
    tags = list(cfg.logger.wandb.tags)
    assert tags[:6] == ["teacher:me5_small", "student:cnn", "compression:quant_static", "data:ubmec", "seed:42",
                        "student_seed:3"]  # fmt: skip
    assert "smoke" in tags  # the experiment's tag, added to the others
    assert cfg.logger.wandb.name == "me5_small→cnn+quant_static student.seed=3"
    same = compose(["student=cnn", "tags=[mine]"], tmp_path)
    assert same.logger.wandb.name == "me5_small→cnn" and list(same.logger.wandb.tags)[-1] == "mine"
    assert "student_seed:42" in list(same.logger.wandb.tags)
    teacher_only = list(compose([], tmp_path).logger.wandb.tags)
    assert "student:none" in teacher_only and not any(t.startswith("student_seed:") for t in teacher_only)
    pruned = compose(["compression=prune_structured_kd", "compression.seed=2"], tmp_path).logger.wandb
    assert pruned.name == "me5_small+prune_structured_kd compression.seed=2" and "compression_seed:2" in pruned.tags
    assert not any(t.startswith("compression_seed:") for t in teacher_only)


def test_a_job_that_raises_closes_its_wandb_run_as_failed(tmp_path, tiny_run_overrides, monkeypatch):
    import bertcompress.pipeline as pipeline

    closed = []
    monkeypatch.setattr(pipeline, "finish_loggers", lambda loggers, exit_code=0: closed.append(exit_code))

    def boom(*args, **kwargs):
        raise RuntimeError("the teacher stage failed")

    monkeypatch.setattr(pipeline, "get_teacher", boom)
    with pytest.raises(RuntimeError, match="the teacher stage failed"):
        pipeline.run(compose(tiny_run_overrides, tmp_path))
    assert closed == [1]


def test_finish_loggers_passes_the_exit_code_to_wandb(monkeypatch):
    import wandb

    from bertcompress.utils.instantiate import finish_loggers

    codes = []
    monkeypatch.setattr(wandb, "run", object())
    monkeypatch.setattr(wandb, "finish", lambda exit_code=None: codes.append(exit_code))
    WandbLogger = type("WandbLogger", (), {})  # what finish_loggers recognises, by class name
    finish_loggers([WandbLogger()], 1)
    finish_loggers([WandbLogger()])
    assert codes == [1, 0]


def test_sigterm_unwinds_the_job_as_an_exit(monkeypatch):
    from bertcompress.pipeline import exit_on_sigterm

    before = signal.getsignal(signal.SIGTERM)
    try:
        exit_on_sigterm()
        with pytest.raises(SystemExit) as e:
            os.kill(os.getpid(), signal.SIGTERM)
        assert e.value.code == 143
    finally:
        signal.signal(signal.SIGTERM, before)


def test_finished_offline_runs_are_the_ones_a_finished_results_json_names(tmp_path):
    import json

    from bertcompress.report.tracking import finished_offline_runs

    for job, status in (("a", "finished"), ("b", "failed")):
        (tmp_path / job / "wandb" / f"offline-run-20261204_101010-{job}id").mkdir(parents=True)
        (tmp_path / job / "results.json").write_text(json.dumps({"status": status, "wandb_run_id": f"{job}id"}))
    (tmp_path / "a" / "wandb" / "offline-run-20261204_090000-killed").mkdir()  # a killed earlier attempt
    assert finished_offline_runs(tmp_path) == [tmp_path / "a" / "wandb" / "offline-run-20261204_101010-aid"]


def test_make_install_takes_torch_from_the_index_given_and_the_registry_by_default():
    def torch_line(*args: str) -> str:  # the first pip line `make install` would run (also under `make test`)
        cmd = ["make", "--no-print-directory", "-n", "install", *args]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
        return next(line for line in out.splitlines() if "pip install" in line)

    assert torch_line().split() == ["python3", "-m", "pip", "install", '"torch==2.13.0"']
    cpu = torch_line("TORCH_INDEX=https://download.pytorch.org/whl/cpu")
    assert '--index-url "https://download.pytorch.org/whl/cpu" "torch==2.13.0"' in cpu


def test_every_cli_argument_has_help_text_and_shows_its_default():
    import argparse

    from bertcompress_runtime.cli import bench_parser, predict_parser

    for parser in (bench_parser("b"), predict_parser("p")):
        assert parser.formatter_class is argparse.ArgumentDefaultsHelpFormatter
        for action in parser._actions:
            assert action.help and action.help.strip(), f"{parser.prog}: {action.dest} has no help"
        assert "example:" in parser.format_help() and "(default: 50)" in bench_parser("b").format_help()
    help_text = subprocess.run(
        [sys.executable, "train.py", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "python train.py experiment=smoke" in help_text and "student: " in help_text
    assert len(help_text.splitlines()) < 60  # examples and groups, not the whole config
