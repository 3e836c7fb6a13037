"""The teacher-ensemble stage: fit (or load) each member of ``cfg.teacher.members`` (a ``tfidf_lr`` model,
or a transformer teacher config with its own seed and max_length) and combine them with the primary
teacher (:func:`bertcompress.distill.teacher_ensemble.combine_teachers`)."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from bertcompress.data.datamodule import ClassificationDataModule
from bertcompress.distill.multi_teacher import out_of_fold_logits
from bertcompress.distill.teacher_ensemble import TeacherEnsemble, combine_teachers
from bertcompress.stages.floor import fit_cached_text_model
from bertcompress.stages.teacher import TeacherResult, get_teacher, teacher_logits, teacher_name, text_logits_fn
from bertcompress.utils.cache import load_or_build

log = logging.getLogger(__name__)

# keys of a transformer member's config that are not teacher hyper-parameters (``seed`` keys it as the
# seed, ``max_length`` as the data's truncation length)
MEMBER_KEYS = ("kind", "seed", "max_length")


def member_config(cfg: DictConfig, member: DictConfig) -> DictConfig:
    """The job config of a transformer member: ``cfg`` with ``teacher`` replaced by the member's teacher
    config (minus ``kind``/``seed``/``max_length``), ``seed`` set to the member's ``seed`` (default:
    ``cfg.seed``) and ``data.max_length`` to its ``max_length`` (default: the job's). The data split stays
    the job's, so the member is keyed (and cached) like a plain run of that teacher with
    ``seed=<member seed> data.seed=<job seed> data.max_length=<member max_length>``."""
    mcfg = copy.deepcopy(cfg)
    with open_dict(mcfg):
        if OmegaConf.select(cfg, "data.seed") is not None:
            mcfg.data.seed = int(OmegaConf.select(cfg, "data.seed"))  # the job's validation carve
        mcfg.teacher = OmegaConf.create({k: v for k, v in member.items() if k not in MEMBER_KEYS})
        mcfg.seed = int(member.get("seed", cfg.seed))
        if member.get("max_length") is not None:
            mcfg.data.max_length = int(member.max_length)
    return mcfg


def _tfidf_member(cfg: DictConfig, member: DictConfig, dm) -> tuple[dict, object, dict]:
    """Fit (or load) a ``tfidf_lr`` teacher; logits by id: out-of-fold on train, the full model elsewhere."""
    from bertcompress.models.tfidf import TfidfLR

    folds = int(member.get("oof_folds", 5))
    path = fit_cached_text_model(cfg, member.model, "tfidf_lr", dm)[0]
    model = TfidfLR.load(path)
    key = {
        "model": OmegaConf.to_container(member.model, resolve=True),
        "data": dm.fingerprint(),
        "labels": list(dm.labels),
        "folds": folds,
        "seed": int(cfg.seed),
    }

    def build(tmp: Path) -> None:
        oof = out_of_fold_logits(
            lambda: hydra.utils.instantiate(member.model), dm.texts("train"), dm.label_ids("train"), dm.labels, folds,
            int(cfg.seed),
        )  # fmt: skip
        np.save(tmp / "oof.npy", oof)

    oof, _ = load_or_build(cfg.paths.cache_dir, "oof_logits", "tfidf_lr", key, build, lambda p: np.load(p / "oof.npy"))
    by_id = dict(zip(dm.ids("train"), oof, strict=True))
    for split in ("val", "test"):
        by_id.update(zip(dm.ids(split), model.logits(dm.texts(split)), strict=True))
    return by_id, model.logits, {"artifact": str(path), "oof_folds": folds}


def build_teacher_ensemble(cfg: DictConfig, dm: ClassificationDataModule, teacher: TeacherResult) -> TeacherEnsemble:
    """The primary teacher plus ``cfg.teacher.members`` (``tfidf_lr`` or full transformer teacher configs,
    each with an optional ``seed``), weights from ``cfg.teacher.weights`` or tuned on validation macro-F1,
    optional per-class offsets (``cfg.teacher.class_bias``: null, ``tune`` or C floats), and the
    ensemble's test metrics.

    Raises:
        ValueError: an unknown member kind, weights that do not match the members, or a bad class_bias.
    """
    names = [teacher_name(cfg)]
    logits = [teacher_logits(cfg, dm, teacher)]
    text_logits, reports = [], {}
    for name, member in (cfg.teacher.get("members") or {}).items():
        kind = member.get("kind", "transformer")
        if kind == "tfidf_lr":
            by_id, fn, reports[name] = _tfidf_member(cfg, member, dm)
        elif kind == "transformer":
            mcfg = member_config(cfg, member)  # the member's head init and dropout follow its seed (get_teacher)
            # its own checkpoint dir, and no loggers: its curves would mix with the primary's under one name
            mdm = dm.view(max_length=OmegaConf.select(mcfg, "data.max_length", default=None))  # its own length
            mteacher = get_teacher(mcfg, mdm, [], ckpt_subdir=f"teacher_{name}")
            by_id = teacher_logits(mcfg, mdm, mteacher)
            fn = text_logits_fn(mteacher, dm.eval_batch_size)
        else:
            raise ValueError(f"teacher.members.{name}.kind={kind!r}: expected 'transformer' or 'tfidf_lr'")
        names.append(name)
        logits.append(by_id)
        text_logits.append(fn)
    return combine_teachers(cfg.teacher, names, logits, text_logits, reports, dm)
