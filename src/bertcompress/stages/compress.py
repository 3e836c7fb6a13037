"""The compression stage: prune and/or quantize the run's final model (the teacher, or the distilled
student) per ``cfg.compression`` and save it as the run's artifact."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import hydra
from omegaconf import DictConfig

from bertcompress.compression.apply import FinalModel, compress_and_save
from bertcompress.compression.steps import compression_steps
from bertcompress.data.datamodule import ClassificationDataModule
from bertcompress.distill.module import DistillStudent
from bertcompress.models.students import HFStudent
from bertcompress.stages.student import StudentResult
from bertcompress.stages.teacher import TeacherResult
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
    seed_stage(cfg.seed, "compression")  # the pruning fine-tune's data order and dropout

    def finetune(module, callbacks, epochs: int, optimizer):  # the step's own settings (gradual pruning, recovery)
        if optimizer is not None and not callable(optimizer):  # the step's optimizer config (_partial_: true)
            optimizer = hydra.utils.instantiate(optimizer)
        lit = DistillStudent(module, dm.labels, kd=False, optimizer=optimizer)
        trainer = hydra.utils.instantiate(
            cfg.trainer,
            max_epochs=int(epochs),
            callbacks=callbacks,
            logger=False,
            enable_checkpointing=False,
        )
        trainer.fit(lit, datamodule=dm.view(final.encoder))

    return Compressed(path, compress_and_save(final, cfg.compression, path, calibration, finetune))


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
