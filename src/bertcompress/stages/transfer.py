"""The transfer set of the student stage: generated texts and unlabeled pools labelled by the teacher
(:mod:`bertcompress.data.augment`), and the choice of pool texts from the teacher's predictions."""

from __future__ import annotations

import logging

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from bertcompress.data.augment import TransferSet, build_transfer_set, read_unlabeled, select_unlabeled
from bertcompress.stages.teacher import TeacherResult

log = logging.getLogger(__name__)


def build_transfer(cfg: DictConfig, dm, teacher: TeacherResult) -> TransferSet | None:
    """The augmented transfer set of ``cfg.augment`` (None when off): generated texts, the user's
    ``augment.unlabeled_file`` and the pools named in ``augment.unlabeled.use``, all through one reader.

    Raises:
        ValueError: a pool named in ``use`` that ``pools`` does not define (listing those it does).
    """
    a = cfg.get("augment") or {}
    if not a.get("enabled", False):
        return None
    tok = teacher.encoder.tokenizer
    mask = a.get("mask_token") or getattr(tok, "mask_token", None) or tok.unk_token
    u = a.get("unlabeled") or {}
    pools = {"unlabeled_file": read_unlabeled(a.unlabeled_file)} if a.get("unlabeled_file") else {}
    for name in u.get("use") or []:
        pool = (u.get("pools") or {}).get(name)
        if pool is None:
            raise ValueError(
                f"augment.unlabeled.use names {name!r}; augment.unlabeled.pools has {list(u.get('pools') or {})}"
            )
        pools[name] = read_unlabeled(pool.path, pool.get("text_column", "text"), f"augment.unlabeled.pools.{name}.path")
    transfer = build_transfer_set(
        dm.texts("train"),
        dm.texts("val") + dm.texts("test"),
        OmegaConf.to_container(a.generators, resolve=True) if a.get("generators") else {},
        int(a.get("seed", cfg.seed)),
        mask,
        pools,
        None if selects(cfg) else u.get("max_texts"),  # a selection labels every pool text first, then caps
    )
    log.info("Transfer set: %s", transfer.report)
    return transfer


def selects(cfg: DictConfig) -> bool:
    """Whether the pool texts are chosen from the teacher's predictions (confidence, class balance)."""
    u = (cfg.get("augment") or {}).get("unlabeled") or {}
    return u.get("min_confidence") is not None or bool(u.get("balance", False))


def select_transfer(cfg: DictConfig, transfer: TransferSet, transfer_logits: dict, ensemble) -> TransferSet:
    """The transfer set with its pool texts chosen from the teacher's (or the ensemble's) probabilities at
    T=1 (:func:`select_unlabeled`: confidence threshold, class balance, cap); generated texts stay."""
    u = cfg.augment.unlabeled
    ids = transfer.ids()
    if ensemble is None:
        z = torch.stack([transfer_logits[i] for i in ids]).numpy()
    else:
        primary = np.stack([transfer_logits[i].numpy() for i in ids])
        by_id = ensemble.soft_logits_by_id([], 1.0, (ids, transfer.texts), primary)
        z = torch.stack([by_id[i] for i in ids]).numpy()
    probs = np.exp(z - z.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    pools = list(u.get("use") or []) + (["unlabeled_file"] if cfg.augment.get("unlabeled_file") else [])
    keep, report = select_unlabeled(
        probs, transfer.sources, pools, u.get("min_confidence"), bool(u.get("balance", False)), u.get("max_texts"),
        int(cfg.augment.get("seed", cfg.seed)),
    )  # fmt: skip
    log.info("Transfer set after selection on the teacher's predictions: %s", report)
    return transfer.subset(keep, {"selection": report})
