"""Instantiate loggers and callbacks from Hydra config groups (lightning-hydra-template style)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def wandb_has_credentials() -> bool:
    """True when W&B can log in without a prompt: ``WANDB_API_KEY`` or a netrc entry."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def prepare_wandb_env() -> str:
    """Choose the W&B mode before any run starts, so that no prompt or crash can happen.

    ``WANDB_MODE`` is respected when set; otherwise it becomes ``offline`` when no credentials
    are found. Returns the mode in force.
    """
    if not os.environ.get("WANDB_MODE") and not wandb_has_credentials():
        os.environ["WANDB_MODE"] = "offline"
        log.info("No WANDB_API_KEY found: W&B runs offline (sync later with `wandb sync`).")
    os.environ.setdefault("WANDB_SILENT", "true")
    return os.environ.get("WANDB_MODE", "online")


def _instantiate_each(cfg: DictConfig | None, what: str, before=None) -> list:
    """Instantiate every entry of a config group that has a ``_target_`` (None/empty gives [])."""
    objects = []
    for name, conf in (cfg or {}).items():
        if conf is None or "_target_" not in conf:
            continue
        if before is not None:
            before(conf)
        log.info("Instantiating %s %s <%s>", what, name, conf._target_)
        objects.append(hydra.utils.instantiate(conf))
    return objects


def instantiate_loggers(cfg: DictConfig | None) -> list:
    """One logger per entry with a ``_target_``; W&B's mode is settled before it starts."""
    loggers = _instantiate_each(cfg, "logger", lambda conf: prepare_wandb_env() if "Wandb" in conf._target_ else None)
    for lg in loggers:
        # Lightning passes anonymous=None to wandb.init, which wandb 0.19+ answers with "The anonymous setting
        # has no effect": leave the setting out unless it was asked for
        init = getattr(lg, "_wandb_init", None)
        if isinstance(init, dict) and init.get("anonymous") is None:
            init.pop("anonymous", None)
    return loggers


def instantiate_callbacks(cfg: DictConfig | None) -> list:
    """One callback per entry with a ``_target_``."""
    return _instantiate_each(cfg, "callback")


def finish_loggers(loggers: list, exit_code: int = 0) -> None:
    """Close W&B runs so that each multirun job is its own run; ``exit_code != 0`` marks a run failed (a job
    that ended by an exception or a signal)."""
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger":
            import wandb

            if wandb.run is not None:
                wandb.finish(exit_code=exit_code)


def wandb_run_id(loggers: list) -> str | None:
    """The id of this job's W&B run (its offline dir is ``wandb/offline-run-<time>-<id>``), or None."""
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger":
            return str(lg.experiment.id)
    return None
