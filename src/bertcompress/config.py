"""Compose the project's Hydra config outside ``train.py`` (scripts, notebooks): the same ``conf/train.yaml``
with the same overrides a command line would give."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig


def conf_dir() -> Path:
    """The checkout's ``conf/``: under ``$BERTCOMPRESS_ROOT`` when set, else beside ``src/`` (an editable install).

    Raises:
        FileNotFoundError: no ``conf/train.yaml`` there.
    """
    root = Path(os.environ.get("BERTCOMPRESS_ROOT") or Path(__file__).resolve().parents[2])
    if not (root / "conf" / "train.yaml").is_file():
        raise FileNotFoundError(f"{root / 'conf'}: no train.yaml; set BERTCOMPRESS_ROOT to the checkout")
    return root / "conf"


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """``conf/train.yaml`` composed with ``overrides`` (``["student=cnn", "data.limit_test=100"]``), with the
    resolvers ``train.py`` registers; interpolations are resolved on access."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import bertcompress  # noqa: F401  (the OmegaConf resolvers the configs use)

    os.environ.setdefault("BERTCOMPRESS_ROOT", str(conf_dir().parent))
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=list(overrides))
