"""The main job, as the method reads: teacher → soft targets → student → compression → evaluation → results.

``train.py`` composes the config and calls :func:`run_job`. Each stage lives in :mod:`bertcompress.stages`
and returns a small typed result; nothing a stage does changes what a later stage sees, except through
what it returns (each stage gets a view of the datamodule with its own encoder and transfer set).
Under DDP (``hardware=ddp``) every rank runs the stages up to compression, taking part in each fit;
rank 0 alone writes, tests and benchmarks (:mod:`bertcompress.utils.distributed`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from bertcompress import is_multirun
from bertcompress.benchmark.machine import machine_info
from bertcompress.data.datamodule import ClassificationDataModule
from bertcompress.distill.teacher_ensemble import TeacherEnsemble
from bertcompress.jobs import finished_result, metric_value, record_failure
from bertcompress.metrics import METRIC_UNIT, headline_metric, percent_block
from bertcompress.models.params import count_parameters
from bertcompress.report.tracking import log_results
from bertcompress.schema import RunResults
from bertcompress.stages.compress import compress_final, student_final, teacher_final
from bertcompress.stages.ensemble import build_teacher_ensemble
from bertcompress.stages.evaluate import evaluate_artifact
from bertcompress.stages.student import run_student
from bertcompress.stages.teacher import TeacherResult, get_teacher, teacher_test_metrics
from bertcompress.training import monitor
from bertcompress.utils.cache import cache_uses, reset_cache_uses, run_tempdir
from bertcompress.utils.distributed import check_launch, global_rank, is_rank_zero, leave_distributed
from bertcompress.utils.instantiate import finish_loggers, instantiate_loggers, wandb_run_id
from bertcompress.utils.io import atomic_write_json
from bertcompress.utils.logs import tidy_run_logging
from bertcompress.validate import validate

__all__ = ["metric_value", "run", "run_job"]

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    """Run the configured job and write ``results.json`` atomically into the run dir.

    Teacher only (``student=none``): fine-tune (or load from the cache) and test the teacher. With a
    student: also distill it from the teacher's soft targets and test it; the student is then the final
    model, and ``retention`` = student macro-F1 / teacher macro-F1. The final model is compressed, saved
    as the run's artifact, reloaded and benchmarked against the fp32 teacher beside the free floor.

    Returns:
        The results dict (also written to ``${paths.output_dir}/results.json``).

    Raises:
        ValueError: a bad config (loss, compression, task), before any training.
    """
    start = time.perf_counter()
    tidy_run_logging()
    reset_cache_uses()
    torch.set_num_threads(int(cfg.hardware.threads))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    has_student = cfg.student.get("name", "none") != "none"
    validate(cfg)  # every choice, before any training (the sweep preflight runs the same check)
    check_launch(cfg)
    dm = _datamodule(cfg)
    loggers = instantiate_loggers(cfg.get("logger")) if is_rank_zero() else []  # DDP: rank 0 logs
    resolved = OmegaConf.to_container(cfg, resolve=True)
    for lg in loggers:
        lg.log_hyperparams(resolved)
    exit_code = 1  # an exception or a signal (SystemExit, KeyboardInterrupt) leaves the W&B run failed
    try:
        teacher = get_teacher(cfg, dm, loggers)
        teacher_block = _teacher_block(
            cfg, teacher, teacher_test_metrics(teacher, dm, cfg, [] if has_student else loggers)
        )
        ensemble = build_teacher_ensemble(cfg, dm, teacher) if cfg.teacher.get("members") else None
        if ensemble is not None:
            teacher_block.update(_ensemble_block(ensemble, teacher_block["test"]))
        results = RunResults("finished", cfg.run_name, dm.task, METRIC_UNIT, headline_metric(dm.task))
        results.update(final_model="teacher", teacher=teacher_block)
        final, final_block = teacher_final(cfg, dm, teacher), teacher_block
        if has_student:
            student = run_student(cfg, dm, teacher, loggers, ensemble)
            final, final_block = student_final(cfg, dm, student), student.block
            results.update(final_model="student", student=student.block)
        compressed = compress_final(cfg, dm, final, out_dir / "artifact" if is_rank_zero() else None)
        if leave_distributed():  # DDP: past the last fit (a pruning fine-tune's), the other ranks are done
            return {"status": "worker", "rank": global_rank()}
        results.update(compression=compressed.report, artifact=str(compressed.artifact))
        evaluation = evaluate_artifact(cfg, dm, compressed.artifact, teacher, final_block["test"])
        results.update(**evaluation.results)
        results.update(**_summary(dm, evaluation.final_test, teacher_block["test"]))
        results.update(params=final_block["params"]["total"], data=dm.summary(), machine=machine_info())
        results.update(caches=cache_uses(), wall_time_s=time.perf_counter() - start, config=resolved)
        results.update(wandb_run_id=wandb_run_id(loggers))
        atomic_write_json(out_dir / "results.json", results.to_json())
        log.info(
            "%s: test accuracy %.2f%%, macro-F1 %.2f -> %s",
            results.final_model, results.accuracy, results.macro_f1, out_dir / "results.json",
        )  # fmt: skip
        log_model = bool(OmegaConf.select(cfg, "logger.wandb.log_model", default=False))
        for lg in loggers:
            log_results(lg, results.to_json(), out_dir / "artifact", log_model)
        exit_code = 0
        return results.to_json()
    finally:
        finish_loggers(loggers, exit_code)


def run_job(cfg: DictConfig) -> dict:
    """:func:`run` for one job of a run or sweep: a job whose run dir holds a finished ``results.json`` of
    the same config is skipped (:func:`bertcompress.jobs.finished_result`); a job that raises
    gets ``status: failed`` in its results.json. In a multirun the sweep goes on; a single run re-raises."""
    previous = finished_result(cfg)
    if previous is not None:
        return previous
    exit_on_sigterm()
    try:
        with run_tempdir(cfg.paths.cache_dir):  # temp files in the cache's tmp/, stale ones removed first
            return run(cfg)
    except Exception as e:
        if not is_rank_zero():  # DDP: rank 0 records the job
            raise
        failed = record_failure(cfg, e)
        if not is_multirun():
            raise
        log.exception("Job %s failed (recorded in %s); the sweep goes on", cfg.get("run_name"), cfg.paths.output_dir)
        return failed


def exit_on_sigterm() -> None:
    """Turn SIGTERM (``kill``, a scheduler's time limit) into ``SystemExit(143)`` in the main thread, so that
    the job unwinds: its W&B run is closed as failed and its temp files are removed. During a fit Lightning's
    own handler is in force (it calls this one too, which then leaves it to Lightning): it stops at the next
    step, and :func:`bertcompress.training.fit_best` exits 143 the same way, keeping ``last.ckpt``."""
    import signal
    import threading

    def _exit(signum, frame):
        if signal.getsignal(signal.SIGTERM) is _exit:  # no fit running: ours alone
            raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit)


def _datamodule(cfg: DictConfig) -> ClassificationDataModule:
    """The configured corpus, set up, checked against ``cfg.task``.

    Raises:
        ValueError: a corpus of another task.
    """
    dm: ClassificationDataModule = hydra.utils.instantiate(cfg.data)
    dm.token_cache_dir = Path(cfg.paths.cache_dir) / "tokens"  # tokenized splits, by content
    dm.setup()
    task = cfg.get("task", {}).get("name", "classification")
    if task != dm.task:
        raise ValueError(f"task={task} but data={cfg.data.name} is a {dm.task} corpus: use task={dm.task}")
    return dm


def _teacher_block(cfg: DictConfig, teacher: TeacherResult, test: dict) -> dict:
    """The fine-tuned teacher's results.json block."""
    return {
        "name": cfg.teacher.name,
        "hub_id": cfg.teacher.hub_id,
        "model_dir": str(teacher.cache_dir),
        "cache_hit": teacher.cache_hit,
        "train_time_s": teacher.train_time_s,
        "best_val_macro_f1": percent_block(teacher.meta).get("best_val_macro_f1"),
        "monitor": monitor(cfg),
        "params": count_parameters(teacher.module.model),
        "test": test,
    }


def _ensemble_block(ensemble: TeacherEnsemble, primary_test: dict) -> dict:
    """The teacher block's ensemble keys: the ensemble is "the teacher" (retention is against it), the
    fine-tuned primary's figures are kept as ``primary_test``."""
    return {
        "primary_test": primary_test,
        "test": ensemble.test,
        "ensemble": {
            "members": ensemble.names,
            "weights": ensemble.weights,
            "weights_tuned_val_macro_f1": ensemble.val_macro_f1,
            "class_bias": ensemble.class_bias,
            "class_bias_tuned_val_macro_f1": ensemble.class_bias_val_macro_f1,
            "members_test": ensemble.members_test,
            "tfidf": ensemble.tfidf_reports,
        },
    }


def _summary(dm: ClassificationDataModule, final_test: dict, teacher_test: dict) -> dict:
    """The headline figures of the final artifact and its retention of the teacher's."""
    head = headline_metric(dm.task)
    out = {
        "retention": {
            "macro_f1": final_test["macro_f1"] / max(teacher_test["macro_f1"], 1e-9),
            "accuracy": final_test["accuracy"] / max(teacher_test["accuracy"], 1e-9),
        },
        "accuracy": final_test["accuracy"],
        "macro_f1": final_test["macro_f1"],
        "final_test": final_test,
    }
    if head != "macro_f1":
        out["retention"][head] = final_test[head] / max(teacher_test[head], 1e-9)
        out[head] = final_test[head]
    return out
