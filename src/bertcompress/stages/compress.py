"""The compression stage: prune and/or quantize the run's final model (the teacher, or the distilled
student) per ``cfg.compression`` and save it as the run's artifact."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import hydra
from omegaconf import DictConfig

from bertcompress.compression.apply import FinalModel, compress_and_save
from bertcompress.compression.auto import is_search
from bertcompress.compression.steps import compression_steps
from bertcompress.data.datamodule import ClassificationDataModule
from bertcompress.distill.feature_module import FeatureDistillStudent
from bertcompress.distill.module import DistillStudent
from bertcompress.distill.soft_targets import InputTeacherCallback
from bertcompress.models.students import HFStudent
from bertcompress.stages.student import StudentResult
from bertcompress.stages.teacher import TeacherResult
from bertcompress.utils.progress import progress_bar
from bertcompress.utils.seeding import seed_stage


@dataclass
class Compressed:
    """The run's saved artifact: its dir and the compression report (what was pruned and quantized,
    sparsity per layer)."""

    artifact: Path | None
    report: dict


def compress_final(cfg: DictConfig, dm: ClassificationDataModule, final: FinalModel, path: Path | None) -> Compressed:
    """Prune/quantize ``final`` per ``cfg.compression`` (its declared steps) and save it as the run's artifact
    at ``path``. ``path=None`` (a DDP rank other than 0): the same steps, fine-tunes included, since every
    rank takes part in those fits (none: nothing is done); the artifact goes to a temp dir that is then removed."""
    if path is None:
        if not any(getattr(step, "fits", False) for step in compression_steps(cfg.compression)):
            return Compressed(None, {})
        with tempfile.TemporaryDirectory(prefix="bertcompress-artifact-") as tmp:
            return compress_final(cfg, dm, final, Path(tmp) / "artifact")
    calibration = dm.loader("train", final.encoder, shuffle=False, batch_size=dm.batch_size)
    # compression.seed seeds the compression fine-tunes alone (one cached model, several seeds); unset: the run's
    seed = cfg.compression.get("seed")
    seed_stage(int(seed if seed is not None else cfg.seed), "compression")  # dropout and calibration draws
    view = dm.view(final.encoder, shuffle_seed=seed)  # the fine-tunes' data order

    def finetune(module, callbacks, epochs: int, optimizer, teacher=None, loss=None, terms=None):
        """The step's own settings (gradual pruning, recovery, QAT); with ``teacher``, KD from its logits on the
        same batches (``loss``), plus intermediate ``terms`` between the two HF models."""
        if optimizer is not None and not callable(optimizer):  # the step's optimizer config (_partial_: true)
            optimizer = hydra.utils.instantiate(optimizer)
        if teacher is None:
            lit = DistillStudent(module, dm.labels, kd=False, optimizer=optimizer)
        elif terms:  # one teacher pass gives the logits and the features
            lit = FeatureDistillStudent(
                module, dm.labels, loss, terms, teacher.model, None, True, optimizer, logits_in_loop=True
            )
        else:
            lit = DistillStudent(module, dm.labels, loss, kd=True, optimizer=optimizer)
            callbacks = [*callbacks, InputTeacherCallback(teacher)]
        callbacks = [*callbacks, progress_bar()]  # Rich on a terminal, a line every 30 s off one
        trainer = hydra.utils.instantiate(
            cfg.trainer,
            max_epochs=int(epochs),
            callbacks=callbacks,
            logger=False,
            enable_checkpointing=False,
        )
        trainer.fit(lit, datamodule=view)

    search = search_hooks(cfg, dm) if is_search(cfg.compression) else None
    return Compressed(path, compress_and_save(final, cfg.compression, path, calibration, finetune, search))


def search_hooks(cfg: DictConfig, dm: ClassificationDataModule) -> tuple:
    """``(score, time)`` for ``compression=auto``: validation macro-F1 of an artifact reloaded from disk, and
    artifacts timed interleaved on validation texts with the run's benchmark loop (batch-1 p50, throughput
    at the target batch size or ``benchmark.throughput_batch_size``). Test texts are never read."""
    from bertcompress.artifacts import load_artifact
    from bertcompress.metrics import task_metrics
    from bertcompress.stages.evaluate import run_benchmark

    texts, labels, threads = dm.texts("val"), dm.label_ids("val"), int(cfg.benchmark.threads)

    def score(directory) -> float:
        predictor = load_artifact(directory, threads=threads)
        return task_metrics(dm.task, labels, predictor.predict_labels(texts), dm.labels)["macro_f1"]

    def time(directories, batch_size: int) -> list[dict]:
        models = [load_artifact(d, threads=threads) for d in directories]
        extra = {str(i): m for i, m in enumerate(models[1:])}
        size = int(batch_size) if int(batch_size) > 1 else None  # None: benchmark.throughput_batch_size
        bench = run_benchmark(cfg, dm, models[0], None, "val", size, evaluate=False, extra=extra)
        figures = [bench, *(bench["extra"][name] for name in extra)]
        return [
            {"p50_ms": f["latency_ms"]["p50"], "throughput_seq_s": f["throughput_seq_s"], "size_mb": f["size_mb"],
             "execution": f["execution"], "machine_busy": bench["machine"].get("busy")}
            for f in figures
        ]  # fmt: skip

    return score, time


def teacher_final(cfg: DictConfig, dm: ClassificationDataModule, teacher: TeacherResult) -> FinalModel:
    """The fine-tuned teacher as the run's final model (``student=none``)."""
    model = teacher.module.model
    normalizer = cfg.teacher.get("text_normalizer")
    return FinalModel(
        cfg.teacher.name, HFStudent(model), teacher.encoder, list(dm.labels), normalizer, hf_model=model, task=dm.task
    )


def student_final(cfg: DictConfig, dm: ClassificationDataModule, student: StudentResult) -> FinalModel:
    """The distilled student as the run's final model."""
    b = student.bundle
    hf_model = getattr(b.module, "model", None)
    return FinalModel(
        cfg.student.name, b.module, b.encoder, list(dm.labels), b.info.get("text_normalizer"), hf_model, dm.task
    )
