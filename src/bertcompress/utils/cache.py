"""The one cache of the project: ``load_or_build(kind, name, key, build, load)``.

An entry is the dir ``<root>/<kind>/<name>-<sha256(key)[:12]>/``, written whole or not at all (built in a
temp dir, then renamed), with ``cache.json`` holding the kind, the name, the key and what ``build``
returned (its metadata). The key is the part of the config (and the data fingerprint) that decides the
result, built by the stage that owns the kind: everything that changes the outcome is in it, and
nothing that does not. Every use is recorded (:func:`cache_uses`) and lands in results.json
(``caches``): kind, name, key, path and ``cache_hit``.

Kinds: ``teachers`` (fine-tuned teachers), ``teacher_tests`` (their test metrics), ``logits`` (teacher
logits by example id), ``oof_logits`` (out-of-fold logits of a TF-IDF member), ``baselines`` (the
floor), ``students`` (distilled students).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from bertcompress.utils.distributed import barrier, broadcast, distributed, is_rank_zero
from bertcompress.utils.io import atomic_dir, atomic_write_json, stable_hash

log = logging.getLogger(__name__)

MARKER = "cache.json"
T = TypeVar("T")


@dataclass(frozen=True)
class CacheUse:
    """One use of a cache entry, as results.json records it."""

    kind: str
    name: str
    key: dict
    path: str
    cache_hit: bool


_USES: list[CacheUse] = []


def cache_path(root: str | Path, kind: str, name: str, key: dict) -> Path:
    """The entry dir of ``key``: ``<root>/<kind>/<name>-<hash>``."""
    return Path(root) / kind / f"{name}-{stable_hash(key)}"


def cache_meta(path: str | Path) -> dict:
    """What ``build`` returned when the entry at ``path`` was written (``{}`` when it has no marker)."""
    marker = Path(path) / MARKER
    return json.loads(marker.read_text())["meta"] if marker.is_file() else {}


def load_or_build(
    root: str | Path,
    kind: str,
    name: str,
    key: dict,
    build: Callable[[Path], dict | None],
    load: Callable[[Path], T],
    reuse: bool = True,
    store: bool = True,
    collective: bool = False,
) -> tuple[T, CacheUse]:
    """``load(entry dir)`` of the entry for ``key``, after ``build(dir)`` has written it when it is missing.

    Args:
        build: writes the result into the dir it is given and returns its metadata (JSON-able) or None.
        load: reads the result from an entry dir.
        reuse: False rebuilds (and replaces) an existing entry (``use_teacher_cache=false``).
        store: False builds into a temp dir that is removed after ``load`` (nothing cached: fast_dev_run).
        collective: ``build`` runs a distributed fit, which every rank must join. Under DDP
            (:mod:`bertcompress.utils.distributed`) rank 0 alone writes the entry; the other ranks build
            into a temp dir only when ``collective``, wait for rank 0 and load its entry, so every rank
            holds the same result and the entry is written once.

    Returns:
        ``(the loaded result, the recorded use)``.
    """
    path = cache_path(root, kind, name, key)
    hit = reuse and store and (path / MARKER).is_file()
    if distributed():
        hit = broadcast(hit)  # rank 0 decides: a rank must not skip a fit the others run
    if hit:
        value = load(path)
    elif store and is_rank_zero():
        with atomic_dir(path) as tmp:
            meta = build(tmp) or {}
            atomic_write_json(tmp / MARKER, {"kind": kind, "name": name, "key": key, "meta": meta})
        barrier()  # (a group the build's fit started counts too)
        value = load(path)
    else:
        value = _build_elsewhere(kind, path, build, load, store, collective)
    use = CacheUse(kind, name, _jsonable(key), str(path), hit)
    _USES.append(use)
    done = (
        "hit" if hit else "written" if store and is_rank_zero() else "read (rank 0 wrote it)" if store else "not stored"
    )
    log.info("Cache %s: %s (%s)", done, path, kind)
    return value, use


def _build_elsewhere(kind: str, path: Path, build, load, store: bool, collective: bool):
    """A miss this process does not write: ``store=False``, or a rank other than 0. Such a rank builds
    (into a temp dir that is then removed) only what it must take part in or cannot wait for: a
    collective build, or any build while no process group is up; it then loads rank 0's entry once the
    ranks meet, or its own build when they cannot."""
    with tempfile.TemporaryDirectory(prefix=f"bertcompress-{kind}-") as tmp:
        if collective or not store or not distributed():
            build(Path(tmp))
        if not store or not distributed():
            return load(Path(tmp))
    barrier()
    return load(path)


def cache_uses() -> list[dict]:
    """The uses recorded since the last :func:`reset_cache_uses`, as dicts."""
    return [asdict(u) for u in _USES]


def reset_cache_uses() -> None:
    """Start a new record (each run does)."""
    _USES.clear()


def _jsonable(obj: Any):
    return json.loads(json.dumps(obj, default=str))
