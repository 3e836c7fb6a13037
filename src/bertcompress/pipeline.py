"""The main job: get a fine-tuned teacher (from the cache, or by fine-tuning it), test it, write results.

``train.py`` composes the config and calls :func:`run`. Later stages (distillation, compression)
plug in after :func:`get_teacher`, which returns the fine-tuned teacher and its data encoder.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import hydra
import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from bertcompress import is_multirun
from bertcompress.benchmark.bench import benchmark
from bertcompress.benchmark.machine import machine_info
from bertcompress.benchmark.params import count_parameters
from bertcompress.compression.apply import FinalModel, compress_and_save, validate_compression
from bertcompress.data.augment import TransferSet, build_transfer_set
from bertcompress.data.datamodule import ClassificationDataModule, EncodedDataset, TextEncoder
from bertcompress.data.normalize import get_text_normalizer
from bertcompress.distill.losses import SoftTargetLoss
from bertcompress.distill.module import DistillStudent
from bertcompress.distill.multi_teacher import (
    check_weights,
    ensemble_log_probs,
    ensemble_soft_logits,
    out_of_fold_logits,
    tune_class_bias,
    tune_weights,
)
from bertcompress.distill.soft_targets import SoftTargetCallback, TeacherLogitCache, predict_logits
from bertcompress.metrics import classification_metrics, headline_metric, task_metrics
from bertcompress.models.classifier import TeacherFinetune
from bertcompress.models.resolver import model_source, resolve_model
from bertcompress.models.student_builder import build_student
from bertcompress.models.students import HFStudent, fold_class_bias
from bertcompress.report.tracking import log_results
from bertcompress.runtime import hf_predictor, load_artifact
from bertcompress.utils.instantiate import finish_loggers, instantiate_callbacks, instantiate_loggers
from bertcompress.utils.io import atomic_dir, atomic_write_json, flatten_dict, stable_hash
from bertcompress.utils.seeding import SCHEME, SeedEachEpoch, seed_stage

log = logging.getLogger(__name__)

META_FILE = "bertcompress_teacher.json"
TEST_FILE = "bertcompress_teacher_test.json"


@dataclass
class TeacherResult:
    """A fine-tuned teacher ready for testing, distillation or compression."""

    module: TeacherFinetune
    encoder: TextEncoder
    cache_dir: Path
    cache_hit: bool
    train_time_s: float
    meta: dict


# keys of a multi-teacher config that do not change the primary teacher's fine-tuned weights
ENSEMBLE_KEYS = ("members", "weights", "weight_step", "primary", "class_bias", "class_bias_step")
# of those, the keys that join a student's cache key only when set (students cached before they existed)
OPTIONAL_ENSEMBLE_KEYS = ("class_bias", "class_bias_step")
# keys of a student config applied after the student cache (student_class_bias), so not in its key
STUDENT_POSTHOC_KEYS = ("class_bias", "class_bias_step")
# keys of a transformer member's config that are not teacher hyper-parameters (``seed`` keys it as the
# seed, ``max_length`` as the data's truncation length)
MEMBER_KEYS = ("kind", "seed", "max_length")


def teacher_name(cfg: DictConfig) -> str:
    """The fine-tuned (primary) teacher's name: ``teacher.primary`` for a multi-teacher config, else ``teacher.name``."""
    return cfg.teacher.get("primary") or cfg.teacher.name


def teacher_cache_key(cfg: DictConfig, dm: ClassificationDataModule) -> dict:
    """Everything that changes the fine-tuned weights: teacher, source, data, split, seed, hyper-params.
    A multi-teacher config keys its primary teacher like the plain config of that teacher."""
    teacher = OmegaConf.to_container(cfg.teacher, resolve=True)
    teacher = {k: v for k, v in teacher.items() if k not in ENSEMBLE_KEYS} | {"name": teacher_name(cfg)}
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
    task = {"task": dm.task} if dm.task != "classification" else {}  # classification keys stay as they were
    return {
        **task,
        "teacher": teacher,
        "source": model_source(cfg.teacher.hub_id),
        "data": dm.fingerprint(),
        "max_length": dm.max_length,
        "batch_size": dm.batch_size,
        "seed": cfg.seed,
        "seeding": SCHEME,
        "trainer": {k: trainer.get(k) for k in trainer_keys},
        "early_stopping": {k: stopping.get(k) for k in ("monitor", "patience", "mode", "min_delta")},
    }


def partial_dir(cfg: DictConfig, kind: str, cache_dir: Path) -> Path:
    """Where an unfinished fit of the result cached at ``cache_dir`` keeps its checkpoints (to resume)."""
    return Path(cfg.paths.cache_dir) / "partial" / kind / cache_dir.name


def teacher_cache_path(cfg: DictConfig, key: dict) -> Path:
    return Path(cfg.paths.cache_dir) / "teachers" / f"{teacher_name(cfg)}-{stable_hash(key)}"


def _best_state(trainer: L.Trainer) -> str | None:
    ckpt = getattr(trainer, "checkpoint_callback", None)
    path = getattr(ckpt, "best_model_path", "") if ckpt is not None else ""
    return path or None


def get_teacher(
    cfg: DictConfig, dm: ClassificationDataModule, loggers: list, ckpt_subdir: str = "teacher"
) -> TeacherResult:
    """Return the fine-tuned teacher: from ``${paths.cache_dir}/teachers/<name>-<key>`` or by fine-tuning.

    Fine-tuning uses early stopping on ``val/macro_f1`` and restores the best checkpoint (run checkpoints
    under ``checkpoints/<ckpt_subdir>``), then saves the model with ``save_pretrained`` (atomically) into
    the cache dir with a meta file.
    """
    base_dir = resolve_model(cfg.teacher.hub_id, cache_dir=cfg.paths.cache_dir)
    key = teacher_cache_key(cfg, dm)
    cache_dir = teacher_cache_path(cfg, key)
    hit = cfg.get("use_teacher_cache", True) and (cache_dir / META_FILE).is_file()
    model_dir = cache_dir if hit else base_dir
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoder = dm.make_encoder(tokenizer, dm.max_length, get_text_normalizer(cfg.teacher.get("text_normalizer")))
    dm.set_encoder(encoder)
    seed_stage(cfg.seed, "teacher/init")  # the head init follows the seed, whatever ran before (a model conversion)
    module = hydra.utils.instantiate(
        cfg.teacher.module, model_dir=str(model_dir), label_names=dm.labels, **_task_kwargs(dm)
    )
    if hit:
        meta = OmegaConf.to_container(OmegaConf.load(cache_dir / META_FILE))
        if meta.get("label_names") != list(dm.labels):
            raise ValueError(
                f"Cached teacher {cache_dir} has labels {meta.get('label_names')}, data has {dm.labels}; "
                "delete the cache dir or fix data.labels."
            )
        log.info("Teacher cache hit: %s (trained %.0f s)", cache_dir, meta.get("train_time_s", 0))
        return TeacherResult(module, encoder, cache_dir, True, 0.0, meta)

    log.info("Fine-tuning teacher %s from %s", cfg.teacher.name, base_dir)
    resume_dir = partial_dir(cfg, "teachers", cache_dir) if cfg.get("use_teacher_cache", True) else None
    train_time, epochs, best_val = _fit_best(
        module, dm, cfg, loggers, int(cfg.trainer.max_epochs), [], ckpt_subdir, (cfg.seed, "teacher/fit"), resume_dir
    )
    meta = {
        "teacher": cfg.teacher.name,
        "hub_id": cfg.teacher.hub_id,
        "base_dir": str(base_dir),
        "label_names": list(dm.labels),
        "key": key,
        "train_time_s": train_time,
        "epochs_run": epochs,
        "best_val_macro_f1": best_val,  # the monitored val metric (task.monitor): val/f1 for task=ner
    }
    with atomic_dir(cache_dir) as tmp:
        module.save_pretrained(tmp, tokenizer)
        atomic_write_json(tmp / META_FILE, meta)
    log.info("Saved fine-tuned teacher to %s", cache_dir)
    if resume_dir is not None:
        shutil.rmtree(resume_dir, ignore_errors=True)  # the fit is whole and cached: nothing to resume
    return TeacherResult(module, encoder, cache_dir, False, train_time, meta)


def _monitor(cfg: DictConfig) -> str:
    """The validation metric checkpoints and early stopping watch (``task.monitor``)."""
    return OmegaConf.select(cfg, "task.monitor", default="val/macro_f1")


def _task_kwargs(dm) -> dict:
    """``task=ner`` for a sequence-labeling datamodule (a token-classification head); nothing otherwise."""
    return {"task": dm.task} if dm.task != "classification" else {}


def _metric(trainer: L.Trainer, name: str, best=None) -> float | None:
    value = best if best is not None else trainer.callback_metrics.get(name)
    return float(value) if value is not None else None


def evaluate(module: TeacherFinetune, dm: ClassificationDataModule, cfg: DictConfig, loggers: list) -> dict:
    """Test ``module`` on the test split with a Lightning trainer; returns sklearn metrics + timing."""
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_cfg.pop("max_epochs", None)
    trainer: L.Trainer = hydra.utils.instantiate(trainer_cfg, logger=loggers or False, callbacks=[])
    start = time.perf_counter()
    trainer.test(module, datamodule=dm, verbose=False)
    elapsed = time.perf_counter() - start
    out = module.test_outputs
    if dm.task == "ner":  # every word of every test sentence; words cut off by max_length count as "O"
        from bertcompress.data.conll import word_predictions

        by_id = dict(zip(out["ids"].tolist(), out["logits"], strict=True))
        true = dm.label_ids("test")
        rows = [by_id[i].argmax(-1).tolist() for i in dm.ids("test")]
        fill = dm.labels.index("O") if "O" in dm.labels else 0
        preds = word_predictions([[0] * len(r) for r in rows], rows, [len(t) for t in true], fill)
        metrics = task_metrics("ner", true, preds, dm.labels)
    else:
        preds = out["logits"].argmax(-1).tolist()
        metrics = classification_metrics(out["labels"].tolist(), preds, dm.labels)
    metrics["test_time_s"] = elapsed
    return metrics


def teacher_test_metrics(teacher: TeacherResult, dm: ClassificationDataModule, cfg: DictConfig, loggers: list) -> dict:
    """Test the teacher once per cached checkpoint: the metrics are stored beside it and reused on a cache hit
    (same weights, same test split: the same numbers), with ``from_cache: true``."""
    path = teacher.cache_dir / TEST_FILE
    if teacher.cache_hit and path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("n") == len(dm.ids("test")):
            return {**cached, "from_cache": True}
    test = evaluate(teacher.module, dm, cfg, loggers)
    if cfg.get("use_teacher_cache", True) and (teacher.cache_dir / META_FILE).is_file():
        atomic_write_json(path, test)
    return test


def _fit_best(
    module: L.LightningModule,
    dm: ClassificationDataModule,
    cfg: DictConfig,
    loggers: list,
    max_epochs: int,
    extra_callbacks: list,
    ckpt_subdir: str,
    seed: tuple[int, str],
    resume_dir: Path | None = None,
) -> tuple[float, int, float | None]:
    """Fit with the configured callbacks (checkpoints under ``ckpt_subdir``) and restore the best weights.

    ``seed`` = (run seed, stage name): every RNG is re-seeded for the stage before the fit and at each epoch
    (dropout; the data order follows (seed, epoch) through the sampler), so what ran before it (a cache
    computed or read) does not change the result. ``resume_dir`` (a dir keyed by the result's cache key):
    the checkpoints go there, ``last.ckpt`` with the whole training state after every epoch, and a fit
    that finds one resumes from it (epoch count, optimizer, scheduler, early stopping, best checkpoint);
    the caller removes the dir once the result is cached.

    Returns:
        (train time in s, epochs run, best value of the monitored val metric (task.monitor) or None).
    """
    from lightning.pytorch.callbacks import ModelCheckpoint

    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    for cb in callbacks:
        if getattr(cb, "dirpath", None):
            cb.dirpath = str(resume_dir) if resume_dir else str(Path(cb.dirpath) / ckpt_subdir)
    if not loggers:
        callbacks = [c for c in callbacks if type(c).__name__ != "LearningRateMonitor"]
    callbacks.append(SeedEachEpoch(*seed))
    ckpt_path = None
    if resume_dir is not None and not cfg.trainer.get("fast_dev_run"):
        callbacks.append(  # the newest epoch's whole training state, as last.ckpt (monitor None: the latest one)
            ModelCheckpoint(
                dirpath=resume_dir, filename="last", monitor=None, save_top_k=1, enable_version_counter=False
            )
        )
        if (resume_dir / "last.ckpt").is_file():
            ckpt_path = str(resume_dir / "last.ckpt")
            log.info("Resuming the interrupted fit from %s", ckpt_path)
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, max_epochs=max_epochs, callbacks=callbacks + extra_callbacks, logger=loggers or False
    )
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    seed_stage(*seed)
    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
        interrupted = trainer.received_sigterm or trainer.interrupted
    except SIGTERMException:
        interrupted = True
    if interrupted:
        where = f"; run the same command again to resume from {resume_dir / 'last.ckpt'}" if resume_dir else ""
        log.error("The %s fit was interrupted: nothing was cached%s", ckpt_subdir, where)
        raise SystemExit(143)  # 128 + SIGTERM, as a shell reports a terminated process
    elapsed = time.perf_counter() - start
    for lg in loggers:
        # WandbLogger(log_model=True) keeps a weak proxy to this fit's ModelCheckpoint and scans it again
        # when a later trainer (the test one) finalizes; the checkpoints were logged when this fit ended,
        # so drop the proxy before the callback is garbage-collected (else: ReferenceError, whenever the
        # collector runs in between). Older Lightning keeps one (_checkpoint_callback), 2.6 a dict of them.
        if hasattr(lg, "_checkpoint_callback"):
            lg._checkpoint_callback = None
        if isinstance(getattr(lg, "_checkpoint_callbacks", None), dict):
            lg._checkpoint_callbacks.clear()
    best = _best_state(trainer)
    if best:
        module.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"])
        log.info("Restored best checkpoint %s", best)
    score = getattr(trainer.checkpoint_callback, "best_model_score", None) if trainer.checkpoint_callback else None
    return elapsed, trainer.current_epoch, _metric(trainer, _monitor(cfg), score)


def soft_target_loss(cfg: DictConfig) -> SoftTargetLoss:
    """The configured loss; raises ValueError for T <= 0 or alpha outside [0, 1] before any training."""
    return SoftTargetLoss(**OmegaConf.to_container(cfg.student.loss, resolve=True))


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


@dataclass
class TeacherEnsemble:
    """Several teachers whose weighted, temperature-scaled probabilities are the soft targets
    (:mod:`bertcompress.distill.multi_teacher`). Member 0 is the primary (fine-tuned) teacher."""

    names: list[str]
    weights: list[float]
    logits: list[dict]  # per teacher: {example id: logits (C,) numpy} on train, val, test
    member_text_logits: list  # per member after the primary: texts -> (N, C) logits, for transfer-set texts
    val_macro_f1: float | None
    test: dict
    members_test: dict
    tfidf_reports: dict
    class_bias: list[float] | None = None  # per-class offsets on log p̄ (C,), tuned on val for macro-F1
    class_bias_val_macro_f1: float | None = None

    def stacked(self, ids) -> list[np.ndarray]:
        return [np.stack([np.asarray(m[i]) for i in ids]) for m in self.logits]

    def soft_logits_by_id(
        self, ids, temperature: float, transfer: tuple[list, list] | None = None, primary_transfer=None
    ) -> dict:
        """``{id: T·log p̄ (C,)}`` for ``ids`` and, given ``transfer`` (ids, texts), for the transfer set;
        ``primary_transfer`` is then the primary teacher's (cached) logits on those texts, (N, C)."""
        z = ensemble_soft_logits(self.stacked(ids), self.weights, temperature, self.class_bias)
        out = dict(zip(ids, torch.from_numpy(z), strict=True))
        if transfer and transfer[0]:
            parts = [primary_transfer, *(f(transfer[1]) for f in self.member_text_logits)]
            zt = ensemble_soft_logits(parts, self.weights, temperature, self.class_bias)
            out.update(zip(transfer[0], torch.from_numpy(zt), strict=True))
        return out


def fit_cached_text_model(cfg: DictConfig, model_cfg: DictConfig, name: str, dm) -> tuple[Path, bool, float]:
    """Fit a text model (``TfidfLR``) on the training split once per data and params, saved (atomically) in
    ``${paths.cache_dir}/baselines/<name>-<key>``; returns ``(dir, cache hit, fit time in s)``."""
    params = OmegaConf.to_container(model_cfg, resolve=True)
    key = {"baseline": params, "data": dm.fingerprint(), "labels": list(dm.labels)}
    path = Path(cfg.paths.cache_dir) / "baselines" / f"{name}-{stable_hash(key)}"
    if (path / "manifest.json").is_file():
        return path, True, 0.0
    start = time.perf_counter()
    model = hydra.utils.instantiate(model_cfg).fit(dm.texts("train"), dm.label_ids("train"), dm.labels)
    fit_time = time.perf_counter() - start
    model.save(path, extra={"key": key, "fit_time_s": fit_time})
    return path, False, fit_time


def _tfidf_member(cfg: DictConfig, member: DictConfig, dm) -> tuple[dict, object, dict]:
    """Fit (or load) a ``tfidf_lr`` teacher; logits by id: out-of-fold on train, the full model elsewhere."""
    from bertcompress.models.tfidf import TfidfLR

    folds = int(member.get("oof_folds", 5))
    path = fit_cached_text_model(cfg, member.model, "tfidf_lr", dm)[0]
    model = TfidfLR.load(path)
    oof_path = path.with_name(path.name + f"-oof{folds}.npy")
    if oof_path.is_file():
        oof = np.load(oof_path)
    else:
        oof = out_of_fold_logits(
            lambda: hydra.utils.instantiate(member.model), dm.texts("train"), dm.label_ids("train"), dm.labels, folds,
            int(cfg.seed),
        )  # fmt: skip
        from bertcompress.utils.io import atomic_write_bytes

        buf = io.BytesIO()
        np.save(buf, oof)
        atomic_write_bytes(oof_path, buf.getvalue())
    by_id = dict(zip(dm.ids("train"), oof, strict=True))
    for split in ("val", "test"):
        by_id.update(zip(dm.ids(split), model.logits(dm.texts(split)), strict=True))
    return by_id, model.logits, {"artifact": str(path), "oof_folds": folds}


def _logits_train_val_test(cfg: DictConfig, dm, teacher: TeacherResult) -> dict:
    """A fine-tuned teacher's logits on train+val (the cache every student shares) and test (cached apart)."""
    out = primary_logits(cfg, dm, teacher, ("train", "val"))[0]
    out.update(primary_logits(cfg, dm, teacher, ("test",))[0])
    return {k: v.numpy() for k, v in out.items()}


def _text_logits_fn(t: TeacherResult, batch_size: int):
    """``texts -> (N, C)`` logits of a fine-tuned transformer teacher (texts with no corpus id)."""

    def fn(texts):
        ds = EncodedDataset(list(range(len(texts))), t.encoder(texts), [-100] * len(texts))
        return predict_logits(t.module, ds, t.encoder.tokenizer, batch_size, "member logits")[1].numpy()

    return fn


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


@contextlib.contextmanager
def _data_max_length(dm, mcfg: DictConfig):
    """Inside the block, ``dm`` truncates texts at the member config's ``data.max_length`` (from
    :func:`member_config`; the job's length where it has none)."""
    before = dm.max_length
    dm.max_length = int(OmegaConf.select(mcfg, "data.max_length", default=None) or before)
    try:
        yield dm
    finally:
        dm.max_length = before


def build_teacher_ensemble(cfg: DictConfig, dm, teacher: TeacherResult) -> TeacherEnsemble:
    """The primary teacher plus ``cfg.teacher.members`` (``tfidf_lr`` or full transformer teacher configs,
    each with an optional ``seed``), weights from ``cfg.teacher.weights`` or tuned on validation macro-F1,
    optional per-class offsets (``cfg.teacher.class_bias``: null, ``tune`` or C floats), and the
    ensemble's test metrics.

    Raises:
        ValueError: an unknown member kind, weights that do not match the members, or a bad class_bias.
    """
    names = [teacher_name(cfg)]
    logits = [_logits_train_val_test(cfg, dm, teacher)]
    text_logits, reports = [], {}
    for name, member in (cfg.teacher.get("members") or {}).items():
        kind = member.get("kind", "transformer")
        if kind == "tfidf_lr":
            by_id, fn, reports[name] = _tfidf_member(cfg, member, dm)
        elif kind == "transformer":
            mcfg = member_config(cfg, member)  # the member's head init and dropout follow its seed (get_teacher)
            # its own checkpoint dir, and no loggers: its curves would mix with the primary's under one name
            with _data_max_length(dm, mcfg):
                mteacher = get_teacher(mcfg, dm, [], ckpt_subdir=f"teacher_{name}")
                by_id = _logits_train_val_test(mcfg, dm, mteacher)
            fn = _text_logits_fn(mteacher, dm.eval_batch_size)
        else:
            raise ValueError(f"teacher.members.{name}.kind={kind!r}: expected 'transformer' or 'tfidf_lr'")
        names.append(name)
        logits.append(by_id)
        text_logits.append(fn)
    dm.set_encoder(teacher.encoder)
    val_ids, test_ids = dm.ids("val"), dm.ids("test")
    weights = cfg.teacher.get("weights", "tune")
    val_logits = [np.stack([m[i] for i in val_ids]) for m in logits]
    val_f1 = None
    if weights == "tune":
        weights, val_f1 = tune_weights(val_logits, dm.label_ids("val"), float(cfg.teacher.get("weight_step", 0.1)))
    weights = check_weights(list(weights), len(names)).tolist()
    bias, bias_val_f1 = ensemble_class_bias(cfg, val_logits, weights, dm)
    test_logits = [np.stack([m[i] for i in test_ids]) for m in logits]
    y = dm.label_ids("test")
    preds = ensemble_log_probs(test_logits, weights, class_bias=bias).argmax(-1).tolist()
    test = classification_metrics(y, preds, dm.labels)
    members_test = {
        n: classification_metrics(y, z.argmax(-1).tolist(), dm.labels) for n, z in zip(names, test_logits, strict=True)
    }
    log.info(
        "Teacher ensemble %s, weights %s, class bias %s: test macro-F1 %.2f", names, weights, bias, test["macro_f1"]
    )
    return TeacherEnsemble(names, weights, logits, text_logits, val_f1, test, members_test, reports, bias, bias_val_f1)


def ensemble_class_bias(cfg: DictConfig, val_logits: list, weights, dm) -> tuple[list[float] | None, float | None]:
    """``cfg.teacher.class_bias``: null (none), ``tune`` (:func:`tune_class_bias` on the weighted
    ensemble's validation log-probabilities) or C floats; returns ``(offsets or None, tuned val macro-F1)``.

    Raises:
        ValueError: another string, or a list whose length is not the number of classes.
    """
    spec = cfg.teacher.get("class_bias")
    if spec is None:
        return None, None
    if spec == "tune":
        z = ensemble_log_probs(val_logits, weights)
        return tune_class_bias(z, dm.label_ids("val"), float(cfg.teacher.get("class_bias_step", 0.05)))
    if isinstance(spec, str):
        raise ValueError(f"teacher.class_bias={spec!r}: expected null, 'tune' or {len(dm.labels)} floats")
    bias = [float(x) for x in spec]
    if len(bias) != len(dm.labels):
        raise ValueError(
            f"teacher.class_bias has {len(bias)} values for the {len(dm.labels)} classes {list(dm.labels)}"
        )
    return bias, None


def build_transfer(cfg: DictConfig, dm, teacher: TeacherResult) -> TransferSet | None:
    """The augmented transfer set of ``cfg.augment`` (None when off); it is added to the training loader."""
    a = cfg.get("augment") or {}
    if not a.get("enabled", False):
        return None
    tok = teacher.encoder.tokenizer
    mask = a.get("mask_token") or getattr(tok, "mask_token", None) or tok.unk_token
    transfer = build_transfer_set(
        dm.texts("train"),
        dm.texts("val") + dm.texts("test"),
        OmegaConf.to_container(a.generators, resolve=True),
        int(a.get("seed", cfg.seed)),
        mask,
        a.get("unlabeled_file"),
    )
    log.info("Transfer set: %s", transfer.report)
    return transfer


STUDENT_META = "bertcompress_student.json"


def student_cache_key(cfg: DictConfig, dm: ClassificationDataModule, teacher: TeacherResult) -> dict:
    """Everything that changes a distilled student's weights: the fine-tuned teacher (its cache key), the
    teacher ensemble, the student config, the transfer set config, data, seed and trainer settings. Jobs
    of a sweep that differ only in compression share one trained student."""
    resolved = OmegaConf.to_container(cfg.teacher, resolve=True)
    teacher_key = teacher_cache_key(cfg, dm)
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
        "data": teacher_key["data"],
        "max_length": dm.max_length,
        "batch_size": dm.batch_size,
        "seed": cfg.seed,
        "seeding": SCHEME,
        "trainer": teacher_key["trainer"],
        "early_stopping": teacher_key["early_stopping"],
    }


def run_student(
    cfg: DictConfig,
    dm: ClassificationDataModule,
    teacher: TeacherResult,
    loggers: list,
    ensemble: TeacherEnsemble | None = None,
):
    """Distill ``teacher`` into the configured student and test it; returns ``(StudentBundle, results block)``."""
    s = cfg.student
    loss = soft_target_loss(cfg)
    seed_stage(cfg.seed, "student/init")
    bundle = build_student(
        s,
        teacher.cache_dir,
        dm.labels,
        dm.texts("train"),
        s.get("max_length") or dm.max_length,
        cfg.paths.cache_dir,
        cfg.teacher.get("text_normalizer"),
        task=dm.task,
    )
    key = student_cache_key(cfg, dm, teacher)
    cache_dir = Path(cfg.paths.cache_dir) / "students" / f"{s.name}-{stable_hash(key)}"
    if cfg.get("use_student_cache", True) and (cache_dir / STUDENT_META).is_file():
        # the same student config distilled from the same teacher on the same data: reuse its weights
        state = torch.load(cache_dir / "student.pt", map_location="cpu", weights_only=True)
        bundle.module.load_state_dict(state)
        meta = json.loads((cache_dir / STUDENT_META).read_text())
        log.info("Student cache hit: %s (trained %.0f s)", cache_dir, meta["block"]["train_time_s"])
        module = DistillStudent(bundle.module, dm.labels, loss, kd=bool(s.kd))
        dm.set_encoder(bundle.encoder)
        meta["block"]["class_bias"] = student_class_bias(cfg, bundle.module, bundle.encoder, dm)
        test = evaluate(module, dm, cfg, loggers)
        return bundle, {**meta["block"], "test": test, "cache_hit": True, "cache_dir": str(cache_dir)}
    extra, logit_cache = [], None
    mode = s.get("soft_targets", "black_box")
    transfer = build_transfer(cfg, dm, teacher) if s.kd else None
    transfer_pair = (transfer.ids(), transfer.texts) if transfer else None
    if transfer_pair:
        dm.set_transfer(*transfer_pair)  # in the training loader until the fit ends
    if s.kd:
        if mode == "black_box":
            transfer_logits = {}
            if transfer is not None:  # the primary teacher's logits on the transfer set, via the on-disk cache
                extra_key = {"transfer": stable_hash(transfer.texts)}
                transfer_logits = primary_logits(cfg, dm, teacher, ("transfer",), extra_key)[0]
            if ensemble is not None:
                t = loss.temperature if loss.mode == "kl" else 1.0
                primary_transfer = (
                    np.stack([transfer_logits[i].numpy() for i in transfer_pair[0]]) if transfer_pair else None
                )
                logits_by_id = ensemble.soft_logits_by_id(
                    dm.ids("train") + dm.ids("val"), t, transfer_pair, primary_transfer
                )
            else:
                logits_by_id, logit_cache = primary_logits(cfg, dm, teacher, ("train", "val"))
                logits_by_id.update(transfer_logits)
            extra.append(SoftTargetCallback(logits_by_id=logits_by_id))
        elif mode == "online" and dm.task == "ner":
            raise ValueError("student.soft_targets=online is for text classification; task=ner uses black_box")
        elif mode == "online":
            texts = dict(zip(dm.ids("train"), dm.texts("train"), strict=True))
            if transfer_pair:
                texts.update(zip(*transfer_pair, strict=True))
            extra.append(SoftTargetCallback(teacher=teacher.module, teacher_encoder=teacher.encoder, texts_by_id=texts))
        else:
            raise ValueError(f"student.soft_targets={mode!r}: expected 'black_box' or 'online'")
    module = DistillStudent(
        bundle.module,
        dm.labels,
        loss,
        kd=bool(s.kd),
        optimizer=hydra.utils.instantiate(s.optimizer),
        warmup_ratio=s.get("warmup_ratio", 0.1),
    )
    dm.set_encoder(bundle.encoder)
    try:
        resume_dir = partial_dir(cfg, "students", cache_dir) if cfg.get("use_student_cache", True) else None
        train_time, epochs, best_val = _fit_best(
            module, dm, cfg, loggers, int(s.epochs), extra, "student", (cfg.seed, "student/fit"), resume_dir
        )
    finally:
        dm.set_transfer(None)  # the transfer set is for distillation only
    state = {k: v.detach().clone() for k, v in bundle.module.state_dict().items()}  # cached without the offsets
    class_bias = student_class_bias(cfg, bundle.module, bundle.encoder, dm)
    test = evaluate(module, dm, cfg, loggers)
    block = {
        "name": s.name,
        "kind": s.kind,
        "kd": bool(s.kd),
        "loss": {"mode": loss.mode, "temperature": loss.temperature, "alpha": loss.alpha} if s.kd else None,
        "soft_targets": mode if s.kd else None,
        "logit_cache": str(logit_cache.path) if logit_cache else None,
        "logit_cache_hit": logit_cache.hit if logit_cache else None,
        "transfer_set": transfer.report if transfer else None,
        "params": count_parameters(bundle.module),
        "info": bundle.info,
        "train_time_s": train_time,
        "epochs_run": epochs,
        "best_val_macro_f1": best_val,
        "monitor": _monitor(cfg),  # what best_val_macro_f1 holds: val/macro_f1, or val/f1 for task=ner
    }
    if cfg.get("use_student_cache", True) and not cfg.trainer.get("fast_dev_run"):
        with atomic_dir(cache_dir) as tmp:
            torch.save(state, tmp / "student.pt")
            atomic_write_json(tmp / STUDENT_META, {"key": key, "block": block})
        shutil.rmtree(partial_dir(cfg, "students", cache_dir), ignore_errors=True)
    return bundle, {**block, "class_bias": class_bias, "test": test, "cache_hit": False, "cache_dir": str(cache_dir)}


def student_class_bias(cfg: DictConfig, model: torch.nn.Module, encoder, dm) -> dict | None:
    """``student.class_bias``: null (off) or ``tune``: per-class offsets on the trained student's logits,
    tuned on validation macro-F1 (:func:`tune_class_bias`) and folded into its logit layer's bias
    (:func:`fold_class_bias`), so the test figures, the compression and the artifact all use them. The
    student cache keeps the weights without offsets, so this choice does not re-train a student.

    Returns:
        ``{"offsets", "val_macro_f1_before", "val_macro_f1", "layers"}`` or None when off.

    Raises:
        ValueError: another value, or ``task=ner``.
    """
    spec = cfg.student.get("class_bias")
    if spec is None:
        return None
    if spec != "tune" or dm.task != "classification":
        raise ValueError(
            f"student.class_bias={spec!r} (task={dm.task}): expected null or 'tune', for text classification"
        )
    val = dm.dataset("val", encoder)
    z = predict_logits(model, val, None, dm.eval_batch_size, "student val logits", dm.collator(encoder))[1].numpy()
    y = dm.label_ids("val")
    before = classification_metrics(y, z.argmax(-1).tolist(), dm.labels)["macro_f1"]
    offsets, after = tune_class_bias(z, y, float(cfg.student.get("class_bias_step", 0.05)))
    layers = fold_class_bias(model, offsets)
    log.info("Student class bias %s (val macro-F1 %.2f -> %.2f), folded into %s", offsets, before, after, layers)
    return {"offsets": offsets, "val_macro_f1_before": before, "val_macro_f1": after, "layers": layers}


def compress_final(cfg: DictConfig, dm: ClassificationDataModule, final: FinalModel, path: Path) -> dict:
    """Prune/quantize the final model per ``cfg.compression`` and save it as the run's artifact."""
    calibration = dm.loader("train", final.encoder, shuffle=False, batch_size=dm.batch_size)
    seed_stage(cfg.seed, "compression")  # the pruning fine-tune's data order and dropout

    def finetune(module, callbacks):  # the gradual pruning schedule fine-tunes as it prunes
        p = cfg.compression.pruning
        lit = DistillStudent(module, dm.labels, kd=False, optimizer=hydra.utils.instantiate(p.optimizer))
        dm.set_encoder(final.encoder)
        trainer = hydra.utils.instantiate(
            cfg.trainer,
            max_epochs=int(p.finetune_epochs),
            callbacks=callbacks,
            logger=False,
            enable_checkpointing=False,
        )
        trainer.fit(lit, datamodule=dm)

    return compress_and_save(final, cfg.compression, path, calibration, finetune)


def teacher_reference(cfg: DictConfig, dm: ClassificationDataModule, teacher: TeacherResult):
    """The benchmark's reference: the fp32 fine-tuned teacher, loaded from its cache dir."""
    return hf_predictor(
        teacher.cache_dir, list(dm.labels), dm.max_length, cfg.teacher.get("text_normalizer"), task=dm.task
    )


def run_benchmark(cfg: DictConfig, dm: ClassificationDataModule, predictor, reference, **kwargs) -> dict:
    """Benchmark ``predictor`` (an artifact reloaded from disk) against ``reference`` on the test split,
    with the ``cfg.benchmark`` settings; ``kwargs`` go to :func:`benchmark` (e.g. ``evaluate_reference``)."""
    b = cfg.benchmark
    return benchmark(
        predictor,
        dm.texts("test"),
        dm.label_ids("test"),
        reference=reference,
        n_runs=int(b.n_runs),
        warmup=int(b.warmup),
        throughput_batches=int(b.throughput_batches),
        throughput_batch_size=int(b.throughput_batch_size),
        threads=int(b.threads),
        cuda=bool(b.get("cuda", False)),
        block_size=int(b.get("block_size", 10)),
        **kwargs,
    )


def run_baseline(cfg: DictConfig, dm: ClassificationDataModule, reference) -> dict | None:
    """Fit (or load from ``${paths.cache_dir}/baselines``) the classical floor and benchmark it, reloaded
    from disk, against ``reference`` (the same fp32 teacher as the final model; None when the benchmark
    is off). Returns its results block, or None for ``baseline=none``."""
    b = cfg.get("baseline") or {}
    if b.get("name", "none") == "none":
        return None
    if dm.task != "classification":
        raise ValueError(
            f"baseline={b.name} is a text classifier; task={dm.task} has no classical floor (baseline=none)"
        )
    path, hit, fit_time = fit_cached_text_model(cfg, b.model, b.name, dm)
    predictor = load_artifact(path)
    if reference is None:
        probs = predictor.predict_proba(dm.texts("test"))
        test = classification_metrics(dm.label_ids("test"), probs.argmax(-1).tolist(), dm.labels)
        return {"name": b.name, "artifact": str(path), "cache_hit": hit, "fit_time_s": fit_time, "test": test}
    bench = run_benchmark(cfg, dm, predictor, reference, evaluate_reference=False)
    log.info("Baseline %s: test macro-F1 %.2f (%s)", b.name, bench["test"]["macro_f1"], "cached" if hit else "fitted")
    return {
        "name": b.name,
        "artifact": str(path),
        "cache_hit": hit,
        "fit_time_s": fit_time,
        "test": bench["test"],
        "params": bench["params"],
        "benchmark": bench,
    }


def run(cfg: DictConfig) -> dict:
    """Run the configured job and write ``results.json`` atomically into the run dir.

    Teacher only (``student=none``): fine-tune (or load from the cache) and test the teacher.
    With a student: also distill it from the teacher's soft targets and test it; the student is
    then the final model, and ``retention`` = student macro-F1 / teacher macro-F1.

    Returns:
        The results dict (also written to ``${paths.output_dir}/results.json``).
    """
    start = time.perf_counter()
    torch.set_num_threads(int(cfg.hardware.threads))
    L.seed_everything(cfg.seed, workers=True)
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    has_student = cfg.student.get("name", "none") != "none"
    if has_student:
        soft_target_loss(cfg)  # fail fast on a bad T or alpha
    validate_compression(cfg.compression)

    dm: ClassificationDataModule = hydra.utils.instantiate(cfg.data)
    dm.setup()
    task = cfg.get("task", {}).get("name", "classification")
    if task != dm.task:
        raise ValueError(f"task={task} but data={cfg.data.name} is a {dm.task} corpus: use task={dm.task}")
    if task == "ner" and (cfg.teacher.get("members") or (cfg.get("augment") or {}).get("enabled")):
        raise ValueError("task=ner: multi-teacher ensembles and augmented transfer sets are for classification")
    loggers = instantiate_loggers(cfg.get("logger"))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    for lg in loggers:
        lg.log_hyperparams(resolved)
    try:
        teacher = get_teacher(cfg, dm, loggers)
        teacher_test = teacher_test_metrics(teacher, dm, cfg, [] if has_student else loggers)
        results = {
            "status": "finished",
            "run_name": cfg.run_name,
            "task": dm.task,
            "headline_metric": headline_metric(dm.task),
            "final_model": "teacher",
            "teacher": {
                "name": cfg.teacher.name,
                "hub_id": cfg.teacher.hub_id,
                "model_dir": str(teacher.cache_dir),
                "cache_hit": teacher.cache_hit,
                "train_time_s": teacher.train_time_s,
                "best_val_macro_f1": teacher.meta.get("best_val_macro_f1"),
                "monitor": _monitor(cfg),
                "params": count_parameters(teacher.module.model),
                "test": teacher_test,
            },
        }
        ensemble = None
        if cfg.teacher.get("members"):
            ensemble = build_teacher_ensemble(cfg, dm, teacher)
            results["teacher"]["primary_test"] = teacher_test
            teacher_test = ensemble.test  # the ensemble is "the teacher": retention is against it
            results["teacher"]["test"] = teacher_test
            results["teacher"]["ensemble"] = {
                "members": ensemble.names,
                "weights": ensemble.weights,
                "weights_tuned_val_macro_f1": ensemble.val_macro_f1,
                "class_bias": ensemble.class_bias,
                "class_bias_tuned_val_macro_f1": ensemble.class_bias_val_macro_f1,
                "members_test": ensemble.members_test,
                "tfidf": ensemble.tfidf_reports,
            }
        final_block = results["teacher"]
        final = FinalModel(
            cfg.teacher.name,
            HFStudent(teacher.module.model),
            teacher.encoder,
            list(dm.labels),
            cfg.teacher.get("text_normalizer"),
            hf_model=teacher.module.model,
            task=dm.task,
        )
        if has_student:
            bundle, results["student"] = run_student(cfg, dm, teacher, loggers, ensemble)
            final_block = results["student"]
            results["final_model"] = "student"
            final = FinalModel(
                cfg.student.name,
                bundle.module,
                bundle.encoder,
                list(dm.labels),
                bundle.info.get("text_normalizer"),
                hf_model=getattr(bundle.module, "model", None),
                task=dm.task,
            )
        results["compression"] = compress_final(cfg, dm, final, out_dir / "artifact")
        results["artifact"] = str(out_dir / "artifact")
        final_test = final_block["test"]
        predictor = load_artifact(out_dir / "artifact", threads=int(cfg.benchmark.threads))
        reference = teacher_reference(cfg, dm, teacher) if cfg.benchmark.enabled else None
        if reference is not None:
            bench = run_benchmark(cfg, dm, predictor, reference)
            results["benchmark"] = bench
            final_test = bench["test"]
            results.update(
                speedup=bench.get("speedup"),
                compression_ratio=bench.get("compression_ratio"),
                size_mb=bench["size_mb"],
                latency_p50_ms=bench["latency_ms"]["p50"],
                latency_p95_ms=bench["latency_ms"]["p95"],
                throughput_seq_s=bench["throughput_seq_s"],
            )
        baseline = run_baseline(cfg, dm, reference)
        if baseline is not None:
            results["baseline"] = baseline
            # the final model has a reason to exist only if it beats the free floor
            results["beats_baseline"] = final_test["macro_f1"] > baseline["test"]["macro_f1"]
        if dm.ids("val"):  # the compressed artifact on the validation split: what a sweeper may tune on
            results["final_val"] = task_metrics(
                dm.task, dm.label_ids("val"), predictor.predict_labels(dm.texts("val")), dm.labels
            )
        if dm.task == "ner" and reference is not None:  # Buuri 2022's table: the first 1,000 val sentences
            from bertcompress.benchmark.bench import inference_table

            n = int(cfg.benchmark.get("inference_samples", 1000))
            results["inference_val"] = {
                "final": inference_table(predictor, dm.texts("val"), dm.label_ids("val"), n),
                "reference": inference_table(reference, dm.texts("val"), dm.label_ids("val"), n),
            }
        head = headline_metric(dm.task)
        results["retention"] = {
            "macro_f1": final_test["macro_f1"] / max(teacher_test["macro_f1"], 1e-9),
            "accuracy": final_test["accuracy"] / max(teacher_test["accuracy"], 1e-9),
        }
        if head != "macro_f1":
            results["retention"][head] = final_test[head] / max(teacher_test[head], 1e-9)
            results[head] = final_test[head]
        results.update(
            accuracy=final_test["accuracy"],
            macro_f1=final_test["macro_f1"],
            final_test=final_test,
            params=final_block["params"]["total"],
            data=dm.summary(),
            machine=machine_info(),
            wall_time_s=time.perf_counter() - start,
            config=resolved,
        )
        atomic_write_json(out_dir / "results.json", results)
        log.info(
            "%s: test accuracy %.2f%%, macro-F1 %.2f -> %s",
            results["final_model"],
            results["accuracy"],
            results["macro_f1"],
            out_dir / "results.json",
        )
        log_model = bool(OmegaConf.select(cfg, "logger.wandb.log_model", default=False))
        for lg in loggers:
            log_results(lg, results, out_dir / "artifact", log_model)
        return results
    finally:
        finish_loggers(loggers)


# the config keys that decide a job's result: a finished results.json is reused only when they match
RESULT_KEYS = ("task", "seed", "data", "teacher", "student", "compression", "augment", "baseline")


def config_difference(previous: dict, cfg: DictConfig) -> str | None:
    """The first difference between a finished job's recorded config (``results.json["config"]``,
    resolved) and ``cfg`` on :data:`RESULT_KEYS`, as ``"key: old -> new"``; None when they agree.
    Where the job writes, logs and benchmarks is not compared, nor a key the recorded config lacks
    whose value is now null (a key added to the configs since, with a default that changes nothing)."""

    for key in RESULT_KEYS:
        now = OmegaConf.select(cfg, key, default=None)
        now = OmegaConf.to_container(now, resolve=True) if isinstance(now, DictConfig) else now
        old_flat, new_flat = flatten_dict({key: previous.get(key)}), flatten_dict({key: now})
        for k in sorted(set(old_flat) | set(new_flat)):
            a, b = old_flat.get(k, "<missing>"), new_flat.get(k, "<missing>")
            if a != b and not (a == "<missing>" and b is None):  # a key added since, with a null default
                return f"{k}: {a!r} -> {b!r}"
    return None


def run_job(cfg: DictConfig) -> dict:
    """:func:`run` for one job of a run or sweep, with resumable sweeps and recorded failures.

    - With ``skip_finished`` and a finished ``results.json`` already in the run dir, the job is skipped
      and that result returned (``skipped: true``): re-running a sweep redoes only what did not finish.
      A finished result whose config differs on :data:`RESULT_KEYS` (a dir shared by two
      configurations) is not reused: the job runs again, with a warning that names the difference.
    - When the job raises, ``results.json`` gets ``status: failed`` with the error and traceback (written
      atomically). In a multirun the sweep goes on; a single run re-raises (non-zero exit).
    """
    import traceback

    path = Path(cfg.paths.output_dir) / "results.json"
    if cfg.get("skip_finished", True) and path.is_file():
        try:
            previous = json.loads(path.read_text())
        except json.JSONDecodeError:
            previous = {}
        if previous.get("status") == "finished":
            differs = config_difference(previous.get("config") or {}, cfg)
            if differs is None:
                log.info("Skipping %s: %s already finished", cfg.get("run_name"), path)
                return {**previous, "skipped": True}
            log.warning(
                "%s holds a finished result of another configuration (%s); running this job again and "
                "replacing it. Give the sweep its own sweep_name to keep both.",
                path,
                differs,
            )
    try:
        return run(cfg)
    except Exception as e:
        failed = {
            "status": "failed",
            "run_name": cfg.get("run_name"),
            "error": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc(),
            "config": OmegaConf.to_container(cfg, resolve=False),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, failed)
        if not is_multirun():
            raise
        log.exception("Job %s failed (recorded in %s); the sweep goes on", cfg.get("run_name"), path)
        return failed


def metric_value(results: dict, name: str | None) -> float | None:
    """The value a sweeper optimises: ``val/macro_f1`` -> results["final_val"]["macro_f1"]; ``macro_f1`` ->
    results["macro_f1"]; NaN for a failed job (Optuna then marks the trial failed)."""
    if not name:
        return None
    if results.get("status") != "finished":
        return float("nan")
    stage, _, key = name.rpartition("/")
    block = results.get({"val": "final_val", "test": "final_test"}.get(stage, stage)) if stage else results
    if block is None or key not in block:
        raise KeyError(f"optimized_metric={name!r}: results.json has no such figure (try val/macro_f1)")
    return float(block[key])
