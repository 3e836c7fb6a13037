"""The student stage: the configured student distilled from the teacher's soft targets (or the teacher
ensemble's), on the training split plus an optional augmented transfer set, or read from the student cache."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from bertcompress.data.datamodule import ClassificationDataModule
from bertcompress.distill.losses import SoftTargetLoss, intermediate_epochs, loss_from_config
from bertcompress.distill.module import DistillStudent
from bertcompress.distill.multi_teacher import tune_class_bias
from bertcompress.distill.soft_targets import SoftTargetCallback, predict_logits
from bertcompress.distill.teacher_ensemble import TeacherEnsemble
from bertcompress.metrics import METRIC_UNIT, classification_metrics, percent_block
from bertcompress.models.params import count_parameters
from bertcompress.models.student_builder import StudentBundle, build_student
from bertcompress.models.students import fold_class_bias
from bertcompress.stages.teacher import (
    ENSEMBLE_KEYS,
    OPTIONAL_ENSEMBLE_KEYS,
    TeacherResult,
    fit_key,
    primary_logits,
)
from bertcompress.stages.transfer import build_transfer, select_transfer, selects
from bertcompress.training import evaluate, fit_best, fit_epochs, monitor, partial_dir
from bertcompress.utils.cache import cache_meta, cache_path, load_or_build
from bertcompress.utils.distributed import is_rank_zero
from bertcompress.utils.io import stable_hash
from bertcompress.utils.seeding import SCHEME, seed_stage

log = logging.getLogger(__name__)


def student_seed(cfg: DictConfig) -> int:
    """``student.seed`` (head init, dropout, data order, transfer-set sampling); the run seed when unset."""
    return int(cfg.student.get("seed", cfg.seed))


def soft_target_loss(cfg: DictConfig) -> SoftTargetLoss:
    """The configured loss; raises ValueError for T <= 0 or alpha outside [0, 1] before any training."""
    return loss_from_config(cfg.student.loss)


STUDENT_WEIGHTS = "student.pt"


# keys of a student config applied after the student cache (student_class_bias), so not in its key
STUDENT_POSTHOC_KEYS = ("class_bias", "class_bias_step")


def student_cache_key(cfg: DictConfig, dm: ClassificationDataModule, teacher: TeacherResult) -> dict:
    """Everything that changes a distilled student's weights: the fine-tuned teacher (its cache key), the
    teacher ensemble, the student config, the transfer set config, data, seed and trainer settings. Jobs
    of a sweep that differ only in compression share one trained student."""
    resolved = OmegaConf.to_container(cfg.teacher, resolve=True)
    return {
        **({"task": dm.task} if dm.task != "classification" else {}),
        "teacher": teacher.cache_dir.name,
        "ensemble": {
            k: resolved.get(k) for k in ENSEMBLE_KEYS if k not in OPTIONAL_ENSEMBLE_KEYS or resolved.get(k) is not None
        }
        # soft targets p̄_T·exp(b/T); students distilled from the first version, p̄_T·exp(b), are not reused
        | ({"class_bias_soft_targets": "b/T"} if resolved.get("class_bias") is not None else {}),
        "student": {
            k: v for k, v in OmegaConf.to_container(cfg.student, resolve=True).items() if k not in STUDENT_POSTHOC_KEYS
        },
        "augment": OmegaConf.to_container(cfg.get("augment") or {}, resolve=True),
        "max_length": dm.max_length,
        "batch_size": dm.batch_size,
        "seed": cfg.seed,
        "seeding": SCHEME,
        # static students zero the padded positions before a convolution (batch-independent outputs);
        # those cached before, whose outputs leaked padding, are not reused
        **({"padding": "zeroed"} if cfg.student.get("kind") == "static" else {}),
        # a cut vocabulary keeps the transfer set's tokens as well as the training corpus'
        **({"vocabulary": "train+transfer"} if (cfg.get("augment") or {}).get("enabled") else {}),
        **fit_key(cfg, dm),  # data, DDP processes, Trainer settings, early stopping: as the teacher's
    }


@dataclass
class StudentResult:
    """A distilled (or cached) student: ``bundle`` (module, encoder, info) and its results.json block."""

    bundle: StudentBundle
    block: dict


def run_student(
    cfg: DictConfig,
    dm: ClassificationDataModule,
    teacher: TeacherResult,
    loggers: list,
    ensemble: TeacherEnsemble | None = None,
) -> StudentResult:
    """Distill ``teacher`` (or ``ensemble``) into the configured student, or load it from
    ``${paths.cache_dir}/students/<name>-<key>``, then tune its class offsets and test it.

    Raises:
        ValueError: a bad loss (naming the key); the other choices are checked before by validate().
    """
    s = cfg.student
    loss = soft_target_loss(cfg)
    seed = student_seed(cfg)
    seed_stage(seed, "student/init")
    max_length = s.get("max_length") or dm.max_length
    # the transfer set exists before the student, so that a cut vocabulary keeps its tokens too
    transfer = build_transfer(cfg, dm, teacher) if s.kd else None
    bundle = build_student(
        s, teacher.cache_dir, dm.labels, dm.texts("train") + (transfer.texts if transfer else []), max_length,
        cfg.paths.cache_dir, cfg.teacher.get("text_normalizer"), task=dm.task,
    )  # fmt: skip
    key = student_cache_key(cfg, dm, teacher)
    if OmegaConf.select(cfg, "student.general_distillation"):  # task distillation starts from it (cached)
        from bertcompress.stages.general_kd import general_distillation

        bundle.info["general_distillation"] = general_distillation(cfg, bundle, teacher, dm, [])
    view = dm.view(bundle.encoder, shuffle_seed=seed)
    reuse = cfg.get("use_student_cache", True)
    built: dict = {}

    def build(tmp: Path) -> dict:  # the same student config from the same teacher on the same data is reused
        resume_dir = partial_dir(cfg, "students", cache_path(cfg.paths.cache_dir, "students", s.name, key))
        built.update(_distill(cfg, view, teacher, loggers, ensemble, bundle, loss, resume_dir, transfer))
        torch.save(bundle.module.state_dict(), tmp / STUDENT_WEIGHTS)  # cached without the class offsets
        if is_rank_zero():
            shutil.rmtree(resume_dir, ignore_errors=True)
        return built

    def load(path: Path) -> None:
        bundle.module.load_state_dict(torch.load(path / STUDENT_WEIGHTS, map_location="cpu", weights_only=True))

    store = reuse and not cfg.trainer.get("fast_dev_run")
    _, use = load_or_build(cfg.paths.cache_dir, "students", s.name, key, build, load, reuse, store, collective=True)
    block = {**percent_block(built or cache_meta(use.path)), "cache_hit": use.cache_hit, "cache_dir": use.path}
    module = DistillStudent(bundle.module, dm.labels, loss, kd=bool(s.kd))
    block["class_bias"] = student_class_bias(cfg, bundle.module, bundle.encoder, dm)
    block["test"] = evaluate(module, view, cfg, loggers) if is_rank_zero() else {}  # DDP: rank 0 tests
    return StudentResult(bundle, block)


def _distill(cfg, view, teacher, loggers, ensemble, bundle, loss, resume_dir: Path, transfer) -> dict:
    """Fit the student on ``view`` (its encoder; plus the ``transfer`` set or None), resumable from
    ``resume_dir``; returns its results block."""
    s = cfg.student
    transfer_logits: dict = {}
    if transfer is not None:
        full = view.view(transfer=(transfer.ids(), transfer.texts))
        if s.get("soft_targets", "black_box") == "black_box" or selects(cfg):  # the primary's, via the cache
            transfer_logits = primary_logits(
                cfg, full, teacher, ("transfer",), {"transfer": stable_hash(transfer.texts)}
            )[0]
        if selects(cfg):
            transfer = select_transfer(cfg, transfer, transfer_logits, ensemble)
        view = view.view(transfer=(transfer.ids(), transfer.texts))  # the transfer set joins this fit only
    callbacks, logit_cache = (
        _soft_target_callbacks(cfg, view, teacher, loss, ensemble, transfer_logits) if s.kd else ([], None)
    )
    optimizer = hydra.utils.instantiate(s.optimizer)
    terms, stage1, stage1_s = OmegaConf.select(cfg, "student.loss.terms"), intermediate_epochs(s.loss), 0.0
    if stage1:  # TinyBERT's two stages: the intermediate terms alone, then the logit term alone
        first = feature_student(cfg, bundle, teacher, view.labels, loss, optimizer, logit_term=False)
        stage1_s = fit_epochs(first, view, cfg, loggers, stage1, (student_seed(cfg), "student/intermediate"))
    if terms and not stage1:  # intermediate layers: the teacher runs in the loop
        module = feature_student(cfg, bundle, teacher, view.labels, loss, optimizer)
    else:
        module = DistillStudent(
            bundle.module,
            view.labels,
            loss,
            kd=bool(s.kd),
            optimizer=optimizer,
            warmup_ratio=s.get("warmup_ratio", 0.1),
        )
    train_time, epochs, best_val = fit_best(
        module, view, cfg, loggers, int(s.epochs), callbacks, "student", (student_seed(cfg), "student/fit"), resume_dir
    )
    block = {
        "name": s.name,
        "kind": s.kind,
        "kd": bool(s.kd),
        "loss": loss.describe() if s.kd else None,
        "soft_targets": s.get("soft_targets", "black_box") if s.kd else None,
        "logit_cache": str(logit_cache.path) if logit_cache else None,
        "logit_cache_hit": logit_cache.hit if logit_cache else None,
        "transfer_set": transfer.report if transfer else None,
        "params": count_parameters(bundle.module),
        "info": bundle.info,
        "train_time_s": train_time,
        "epochs_run": epochs,
        "best_val_macro_f1": best_val,
        "monitor": monitor(cfg),  # what best_val_macro_f1 holds: val/macro_f1, or val/f1 for task=ner
        "metric_unit": METRIC_UNIT,
    }
    if stage1:
        block.update(intermediate_epochs=stage1, intermediate_time_s=stage1_s)
    return block


def feature_student(cfg, bundle, teacher: TeacherResult, labels, loss, optimizer, logit_term: bool = True):
    """A :class:`FeatureDistillStudent` for ``student.loss.terms`` (hidden states, attention, relations);
    ``logit_term=False``: those terms alone.

    Raises:
        ValueError: a student that does not read the teacher's tokens (a hub student, a static one), or a
            term whose layer map or widths do not fit (naming ``student.loss.terms.<name>``).
    """
    from bertcompress.distill.feature_module import FeatureDistillStudent
    from bertcompress.distill.features import feature_terms

    s = cfg.student
    if s.kind != "truncated":
        raise ValueError(
            f"student.loss.terms with student={s.name} (kind {s.kind}): intermediate-layer terms compare token by "
            "token, so the student must read the teacher's tokens: a truncated teacher (student=teacher_truncated)"
        )
    student_model, teacher_model = bundle.module.model, teacher.module.model
    terms = feature_terms(s.loss.terms, student_model.config, teacher_model.config)
    kept = getattr(bundle.module, "teacher_token_ids", None)
    ids = torch.tensor(kept, dtype=torch.long) if kept is not None else None
    return FeatureDistillStudent(
        bundle.module,
        labels,
        loss,
        terms,
        teacher_model,
        ids,
        bool(s.kd),
        optimizer,
        s.get("warmup_ratio", 0.1),
        logit_term=logit_term,
    )


def _soft_target_callbacks(
    cfg, view, teacher: TeacherResult, loss: SoftTargetLoss, ensemble, transfer_logits: dict
) -> tuple[list, object]:
    """The :class:`SoftTargetCallback` that puts the teacher's soft targets into each training batch, by
    example id (train, val and the transfer set of ``view``, whose primary-teacher logits are
    ``transfer_logits``): cached logits (``black_box``, of the primary teacher or the ensemble) or the
    teacher in the loop (``online``); returns it and the logit cache."""
    mode = cfg.student.get("soft_targets", "black_box")
    transfer_ids, transfer_texts = view.ids("transfer"), view.texts("transfer")
    if mode == "online":  # bertcompress.validate has checked the mode and the task
        texts = dict(zip(view.ids("train") + transfer_ids, view.texts("train") + transfer_texts, strict=True))
        return [SoftTargetCallback(teacher=teacher.module, teacher_encoder=teacher.encoder, texts_by_id=texts)], None
    if ensemble is None:
        logits_by_id, logit_cache = primary_logits(cfg, view, teacher, ("train", "val"))
        return [SoftTargetCallback(logits_by_id={**logits_by_id, **transfer_logits})], logit_cache
    primary = np.stack([transfer_logits[i].numpy() for i in transfer_ids]) if transfer_ids else None
    pair = (transfer_ids, transfer_texts) if transfer_ids else None
    ids = view.ids("train") + view.ids("val")
    return [
        SoftTargetCallback(logits_by_id=ensemble.soft_logits_by_id(ids, loss.target_temperature, pair, primary))
    ], None


def student_class_bias(cfg: DictConfig, model: torch.nn.Module, encoder, dm) -> dict | None:
    """``student.class_bias``: null (off) or ``tune``: per-class offsets on the trained student's logits,
    tuned on validation macro-F1 (:func:`tune_class_bias`) and folded into its logit layer's bias
    (:func:`fold_class_bias`), so the test figures, the compression and the artifact all use them. The
    student cache keeps the weights without offsets, so this choice does not re-train a student.

    Returns:
        ``{"offsets", "val_macro_f1_before", "val_macro_f1", "layers"}`` or None when off.

    ``student.class_bias`` is null or ``tune`` (checked, with the task, by :func:`bertcompress.validate.validate`).
    """
    spec = cfg.student.get("class_bias")
    if spec is None:  # else "tune" for text classification (bertcompress.validate)
        return None
    val = dm.dataset("val", encoder)
    z = predict_logits(model, val, None, dm.eval_batch_size, "student val logits", dm.collator(encoder))[1].numpy()
    y = dm.label_ids("val")
    before = classification_metrics(y, z.argmax(-1).tolist(), dm.labels)["macro_f1"]
    offsets, after = tune_class_bias(z, y, float(cfg.student.get("class_bias_step", 0.05)))
    layers = fold_class_bias(model, offsets)
    log.info("Student class bias %s (val macro-F1 %.2f -> %.2f), folded into %s", offsets, before, after, layers)
    return {"offsets": offsets, "val_macro_f1_before": before, "val_macro_f1": after, "layers": layers}
