"""The fit and test loops every stage uses: Lightning fits with the configured callbacks, the best
checkpoint restored, per-stage and per-epoch seeds, and resumable checkpoints keyed by the result's cache key."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from bertcompress.data.datamodule import ClassificationDataModule
from bertcompress.metrics import classification_metrics, task_metrics
from bertcompress.utils.distributed import barrier, world_size
from bertcompress.utils.instantiate import instantiate_callbacks
from bertcompress.utils.seeding import SeedEachEpoch, seed_stage

log = logging.getLogger(__name__)


def _best_state(trainer: L.Trainer) -> str | None:
    ckpt = getattr(trainer, "checkpoint_callback", None)
    path = getattr(ckpt, "best_model_path", "") if ckpt is not None else ""
    return path or None


def monitor(cfg: DictConfig) -> str:
    """The validation metric checkpoints and early stopping watch (``task.monitor``)."""
    return OmegaConf.select(cfg, "task.monitor", default="val/macro_f1")


def task_kwargs(dm) -> dict:
    """``task=ner`` for a sequence-labeling datamodule (a token-classification head); nothing otherwise."""
    return {"task": dm.task} if dm.task != "classification" else {}


def _metric(trainer: L.Trainer, name: str, best=None) -> float | None:
    value = best if best is not None else trainer.callback_metrics.get(name)
    return float(value) if value is not None else None


def partial_dir(cfg: DictConfig, kind: str, cache_dir: Path) -> Path:
    """Where an unfinished fit of the result cached at ``cache_dir`` keeps its checkpoints (to resume)."""
    return Path(cfg.paths.cache_dir) / "partial" / kind / cache_dir.name


def single_process(cfg: DictConfig) -> dict:
    """``cfg.trainer`` for one process on one device (testing: every test example scored once, in order,
    by rank 0, whatever strategy the fits use)."""
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_cfg.pop("max_epochs", None)
    if world_size(cfg) > 1:
        trainer_cfg.update(strategy="auto", devices=1, num_nodes=1, sync_batchnorm=False)
    return trainer_cfg


def evaluate(module: L.LightningModule, dm: ClassificationDataModule, cfg: DictConfig, loggers: list) -> dict:
    """Test ``module`` on the test split of ``dm`` (a view with the module's encoder) with a Lightning trainer.

    Returns:
        The test metrics (accuracy, macro-F1 in %, per class; entity F1 for NER) and ``test_time_s``.
    """
    from bertcompress.utils.progress import progress_bar

    # Rich on a terminal; off one, no bar (a test loop prints no progress lines)
    trainer: L.Trainer = hydra.utils.instantiate(
        single_process(cfg), logger=loggers or False, callbacks=[progress_bar()]
    )
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


def _fit_callbacks(
    cfg: DictConfig, loggers: list, ckpt_subdir: str, seed: tuple[int, str], resume_dir: Path | None
) -> tuple[list, str | None]:
    """The configured callbacks (checkpoints in ``resume_dir``, else the run dir's ``checkpoints/<ckpt_subdir>``),
    the per-epoch seeding, and with ``resume_dir`` a ``last.ckpt`` of the whole training state after every
    epoch; returns ``(callbacks, the checkpoint to resume from or None)``."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    for cb in callbacks:
        if getattr(cb, "dirpath", None):
            cb.dirpath = str(resume_dir) if resume_dir else str(Path(cb.dirpath) / ckpt_subdir)
    if not loggers:
        callbacks = [c for c in callbacks if type(c).__name__ != "LearningRateMonitor"]
    callbacks.append(SeedEachEpoch(*seed))
    if resume_dir is None or cfg.trainer.get("fast_dev_run"):
        return callbacks, None
    callbacks.append(  # the newest epoch's whole training state, as last.ckpt (monitor None: the latest one)
        ModelCheckpoint(dirpath=resume_dir, filename="last", monitor=None, save_top_k=1, enable_version_counter=False)
    )
    if not (resume_dir / "last.ckpt").is_file():
        return callbacks, None
    log.info("Resuming the interrupted fit from %s", resume_dir / "last.ckpt")
    return callbacks, str(resume_dir / "last.ckpt")


def fit_best(
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
    """Fit ``module`` on ``dm`` (a view with its encoder) with the configured callbacks and restore the best weights.

    ``seed`` = (run seed, stage name): every RNG is re-seeded for the stage before the fit and at each epoch
    (dropout; the data order follows (seed, epoch) through the sampler), so what ran before it (a cache
    computed or read) does not change the result. ``resume_dir`` (a dir keyed by the result's cache key):
    the checkpoints go there, ``last.ckpt`` with the whole training state after every epoch, and a fit
    that finds one resumes from it (epoch count, optimizer, scheduler, early stopping, best checkpoint);
    the caller removes the dir once the result is cached.

    Returns:
        (train time in s, epochs run, best value of the monitored val metric (task.monitor) or None).

    Raises:
        SystemExit: 143 when the fit was interrupted (SIGTERM): nothing is cached, ``last.ckpt`` stays.
    """
    callbacks, ckpt_path = _fit_callbacks(cfg, loggers, ckpt_subdir, seed, resume_dir)
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, max_epochs=max_epochs, callbacks=callbacks + extra_callbacks, logger=loggers or False
    )
    where = f"; run the same command again to resume from {resume_dir / 'last.ckpt'}" if resume_dir else ""
    elapsed = _seeded_fit(trainer, module, dm, seed, ckpt_path, f"{ckpt_subdir} fit", where)
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
    barrier()  # under DDP: every rank has read the checkpoint before rank 0 removes the fit's dir
    score = getattr(trainer.checkpoint_callback, "best_model_score", None) if trainer.checkpoint_callback else None
    return elapsed, trainer.current_epoch, _metric(trainer, monitor(cfg), score)


def fit_epochs(
    module: L.LightningModule, dm: ClassificationDataModule, cfg: DictConfig, loggers: list, epochs: int, seed: tuple
) -> float:
    """Fit ``module`` for exactly ``epochs`` and keep the last weights: no validation, no checkpoint, no early
    stopping, for a stage whose validation metric means nothing (TinyBERT's intermediate-layer stage, whose
    classifier is not trained yet). Seeded as :func:`fit_best`; an interrupted stage is redone from the start.

    Returns:
        The train time in s.

    Raises:
        SystemExit: 143 when the fit was interrupted (SIGTERM).
    """
    from bertcompress.utils.progress import progress_bar

    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, max_epochs=int(epochs), min_epochs=None, callbacks=[SeedEachEpoch(*seed), progress_bar()],
        logger=loggers or False, enable_checkpointing=False, limit_val_batches=0, num_sanity_val_steps=0,
    )  # fmt: skip
    return _seeded_fit(trainer, module, dm, seed, None, f"{seed[1]} fit", "; run the same command again")


def _seeded_fit(trainer: L.Trainer, module, dm, seed: tuple, ckpt_path: str | None, what: str, hint: str) -> float:
    """``trainer.fit`` after seeding the stage; returns its time in s.

    Raises:
        SystemExit: 143 when the fit was interrupted (SIGTERM), after logging that nothing was cached (+ ``hint``).
    """
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    seed_stage(*seed)
    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
        interrupted = trainer.received_sigterm or trainer.interrupted
    except SIGTERMException:
        interrupted = True
    if interrupted:
        log.error("The %s was interrupted: nothing was cached%s", what, hint)
        raise SystemExit(143)  # 128 + SIGTERM, as a shell reports a terminated process
    return time.perf_counter() - start
