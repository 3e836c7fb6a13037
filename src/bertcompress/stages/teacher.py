"""The teacher stage: the fine-tuned teacher from the cache (``${paths.cache_dir}/teachers/<name>-<key>``)
or by fine-tuning it, its test metrics, and its logits (cached, by example id) for distillation."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from bertcompress.data.datamodule import ClassificationDataModule
from bertcompress.data.encoding import TextEncoder
from bertcompress.data.hf_io import encode_dataset
from bertcompress.data.normalize import get_text_normalizer
from bertcompress.distill.soft_targets import TeacherLogitCache, predict_logits
from bertcompress.metrics import METRIC_UNIT
from bertcompress.models.classifier import TeacherFinetune
from bertcompress.models.resolver import model_source, resolve_model
from bertcompress.training import evaluate, fit_best, partial_dir, task_kwargs
from bertcompress.utils.cache import cache_meta, cache_path, load_or_build
from bertcompress.utils.distributed import is_rank_zero, world_size
from bertcompress.utils.io import atomic_write_json, stable_hash
from bertcompress.utils.seeding import SCHEME, seed_stage

log = logging.getLogger(__name__)


TEST_FILE = "bertcompress_teacher_test.json"


# keys of a multi-teacher config that do not change the primary teacher's fine-tuned weights
ENSEMBLE_KEYS = ("members", "weights", "weight_step", "primary", "class_bias", "class_bias_step")


# of those, the keys that join a student's cache key only when set (students cached before they existed)
OPTIONAL_ENSEMBLE_KEYS = ("class_bias", "class_bias_step")


@dataclass
class TeacherResult:
    """A fine-tuned teacher ready for testing, distillation or compression."""

    module: TeacherFinetune
    encoder: TextEncoder
    cache_dir: Path
    cache_hit: bool
    train_time_s: float
    meta: dict


def teacher_name(cfg: DictConfig) -> str:
    """The fine-tuned (primary) teacher's name: ``teacher.primary`` for a multi-teacher config, else ``teacher.name``."""
    return cfg.teacher.get("primary") or cfg.teacher.name


def fit_key(cfg: DictConfig, dm: ClassificationDataModule) -> dict:
    """The part of a fit's cache key that every fitted model shares (teacher and student): the data, the
    processes' count under DDP (batch_size is per process; one process: no key), the Trainer settings that
    change the weights and the early stopping."""
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_keys = (
        "max_epochs",
        "min_epochs",
        "precision",
        "gradient_clip_val",
        "fast_dev_run",
        "limit_train_batches",
        "limit_val_batches",
        "overfit_batches",
        "accumulate_grad_batches",
    )
    callbacks = OmegaConf.to_container(cfg.get("callbacks") or {}, resolve=True)
    stopping = callbacks.get("early_stopping") or {}
    ranks = world_size(cfg)
    return {
        **({"world_size": ranks} if ranks > 1 else {}),
        "data": dm.fingerprint(),
        "trainer": {k: trainer.get(k) for k in trainer_keys},
        "early_stopping": {k: stopping.get(k) for k in ("monitor", "patience", "mode", "min_delta")},
    }


def teacher_cache_key(cfg: DictConfig, dm: ClassificationDataModule) -> dict:
    """Everything that changes the fine-tuned weights: teacher, source, data, split, seed, hyper-params.
    A multi-teacher config keys its primary teacher like the plain config of that teacher."""
    teacher = OmegaConf.to_container(cfg.teacher, resolve=True)
    teacher = {k: v for k, v in teacher.items() if k not in ENSEMBLE_KEYS} | {"name": teacher_name(cfg)}
    task = {"task": dm.task} if dm.task != "classification" else {}  # classification keys stay as they were
    return {
        **task,
        "teacher": teacher,
        "source": model_source(cfg.teacher.hub_id),
        "max_length": dm.max_length,
        "batch_size": dm.batch_size,
        "seed": cfg.seed,
        "seeding": SCHEME,
        **fit_key(cfg, dm),
    }


def get_teacher(
    cfg: DictConfig, dm: ClassificationDataModule, loggers: list, ckpt_subdir: str = "teacher"
) -> TeacherResult:
    """The fine-tuned teacher: the ``teachers`` cache entry of its key (:func:`teacher_cache_key`), built on a
    miss by fine-tuning (early stopping on ``task.monitor``, the best checkpoint restored, resumable from
    ``last.ckpt``) and saving it with ``save_pretrained``.

    Raises:
        ValueError: a cached teacher with another label set than the data's.
    """
    base_dir = resolve_model(cfg.teacher.hub_id, cache_dir=cfg.paths.cache_dir)
    key = teacher_cache_key(cfg, dm)
    normalizer = get_text_normalizer(cfg.teacher.get("text_normalizer"))
    from transformers import AutoTokenizer

    def build(tmp: Path) -> dict:
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        view = dm.view(dm.make_encoder(tokenizer, dm.max_length, normalizer))
        seed_stage(cfg.seed, "teacher/init")  # the head init follows the seed, whatever ran before (a conversion)
        module = hydra.utils.instantiate(
            cfg.teacher.module, model_dir=str(base_dir), label_names=dm.labels, **task_kwargs(dm)
        )
        log.info("Fine-tuning teacher %s from %s", cfg.teacher.name, base_dir)
        resume_dir = partial_dir(cfg, "teachers", cache_path(cfg.paths.cache_dir, "teachers", teacher_name(cfg), key))
        fit = fit_best(
            module,
            view,
            cfg,
            loggers,
            int(cfg.trainer.max_epochs),
            [],
            ckpt_subdir,
            (cfg.seed, "teacher/fit"),
            resume_dir,
        )
        module.save_pretrained(tmp, tokenizer)
        if is_rank_zero():
            shutil.rmtree(resume_dir, ignore_errors=True)  # the fit is whole (and cached once this returns)
        meta = {"teacher": cfg.teacher.name, "hub_id": cfg.teacher.hub_id, "base_dir": str(base_dir)}
        return meta | {
            "label_names": list(dm.labels),
            "train_time_s": fit[0],
            "epochs_run": fit[1],
            "best_val_macro_f1": fit[2],
            "metric_unit": METRIC_UNIT,
        }

    def load(path: Path) -> tuple:
        module = hydra.utils.instantiate(
            cfg.teacher.module, model_dir=str(path), label_names=dm.labels, **task_kwargs(dm)
        )
        return module, dm.make_encoder(AutoTokenizer.from_pretrained(path), dm.max_length, normalizer)

    reuse = cfg.get("use_teacher_cache", True)
    (module, encoder), use = load_or_build(
        cfg.paths.cache_dir, "teachers", teacher_name(cfg), key, build, load, reuse, collective=True
    )
    meta = cache_meta(use.path)
    if meta.get("label_names") != list(dm.labels):
        raise ValueError(
            f"Cached teacher {use.path} has labels {meta.get('label_names')}, data has {dm.labels}; "
            "delete the cache dir or fix data.labels."
        )
    train_time = 0.0 if use.cache_hit else float(meta["train_time_s"])
    return TeacherResult(module, encoder, Path(use.path), use.cache_hit, train_time, {**meta, "key": key})


def teacher_test_metrics(teacher: TeacherResult, dm: ClassificationDataModule, cfg: DictConfig, loggers: list) -> dict:
    """The teacher's test metrics, once per cached teacher and test split (``teacher_tests`` cache: the same
    weights on the same test split give the same numbers); ``from_cache: true`` when reused."""
    key = {"teacher": teacher.cache_dir.name, "test": stable_hash(dm.ids("test")), "n": len(dm.ids("test"))}

    def build(tmp: Path) -> None:
        atomic_write_json(tmp / TEST_FILE, evaluate(teacher.module, dm.view(teacher.encoder), cfg, loggers))

    test, use = load_or_build(
        cfg.paths.cache_dir, "teacher_tests", teacher.cache_dir.name, key, build,
        lambda path: json.loads((path / TEST_FILE).read_text()), reuse=teacher.cache_hit,
    )  # fmt: skip
    return {**test, "from_cache": True} if use.cache_hit else test


def primary_logits(cfg: DictConfig, dm, teacher: TeacherResult, splits, extra_key=None):
    """The fine-tuned teacher's logits ``{id: (C,)}`` on ``splits``, from the on-disk cache (or computed
    once); returns ``(logits by id, the TeacherLogitCache)``."""
    cache = TeacherLogitCache(
        cfg.paths.cache_dir,
        teacher_name(cfg),
        teacher.cache_dir,
        dm,
        teacher.encoder,
        splits=splits,
        extra_key=extra_key,
    )
    return cache.load_or_compute(teacher.module, dm.eval_batch_size), cache


def teacher_logits(cfg: DictConfig, dm, teacher: TeacherResult) -> dict:
    """A fine-tuned teacher's logits on train+val (the cache every student shares) and test (cached apart)."""
    out = primary_logits(cfg, dm, teacher, ("train", "val"))[0]
    out.update(primary_logits(cfg, dm, teacher, ("test",))[0])
    return {k: v.numpy() for k, v in out.items()}


def text_logits_fn(t: TeacherResult, batch_size: int):
    """``texts -> (N, C)`` logits of a fine-tuned transformer teacher (texts with no corpus id)."""

    def fn(texts):
        ds = encode_dataset(range(len(texts)), texts, [-100] * len(texts), t.encoder)
        return predict_logits(t.module, ds, t.encoder.tokenizer, batch_size, "member logits")[1].numpy()

    return fn
