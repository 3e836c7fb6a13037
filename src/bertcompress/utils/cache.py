"""The one cache of the project: ``load_or_build(kind, name, key, build, load)``.

An entry is the dir ``<root>/<kind>/<name>-<sha256(key)[:12]>/``, written whole or not at all (built in a
temp dir, then renamed), with ``cache.json`` holding the kind, the name, the key and what ``build``
returned (its metadata). The key is the part of the config (and the data fingerprint) that decides the
result, built by the stage that owns the kind: everything that changes the outcome is in it, and
nothing that does not. Every use is recorded (:func:`cache_uses`) and lands in results.json
(``caches``): kind, name, key, path and ``cache_hit``.

Runs that share a cache: an entry is built under a lock on it (``filelock``), so a second run that needs
an entry being built waits and then reads it, and only the lock holder uses the entry's partial
checkpoints. ``cache.json`` records each file's size and sha256; an entry whose files no longer match is
named and rebuilt. Locks live in ``locks/``; temp files go in the cache's own ``tmp/``
(:func:`run_tempdir`); those of processes that are gone are removed when a run starts (:func:`clean_stale`).

Kinds: ``teachers`` (fine-tuned teachers), ``teacher_tests`` (their test metrics), ``logits`` (teacher
logits by example id), ``oof_logits`` (out-of-fold logits of a TF-IDF member), ``baselines`` (the
floor), ``students`` (distilled students).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock, Timeout

from bertcompress.utils.distributed import barrier, broadcast, distributed, is_rank_zero
from bertcompress.utils.io import atomic_dir, atomic_write_json, file_sha256, stable_hash

log = logging.getLogger(__name__)

MARKER = "cache.json"
TMP = "tmp"
LOCKS = "locks"
T = TypeVar("T")


class CacheEntryError(RuntimeError):
    """A cache entry that cannot be read back: the message names the entry and how to rebuild it."""


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
    hit = reuse and store and is_rank_zero() and intact(path)
    if distributed():
        hit = broadcast(hit)  # rank 0 decides: a rank must not skip a fit the others run
    if hit:
        value = _load(path, load)
    elif store and is_rank_zero():
        with entry_lock(path):  # another run building this entry holds it: wait, then take its entry
            hit = reuse and not distributed() and intact(path)
            if not hit:
                _remove_temps(path)  # left by a run that died building it (the lock was free)
                with atomic_dir(path) as tmp:
                    meta = build(tmp) or {}
                    atomic_write_json(tmp / MARKER, _marker(tmp, kind, name, key, meta))
        barrier()  # (a group the build's fit started counts too)
        value = _load(path, load)
    else:
        value = _build_elsewhere(kind, path, build, load, store, collective)
    use = CacheUse(kind, name, _jsonable(key), str(path), hit)
    _USES.append(use)
    done = (
        "hit" if hit else "written" if store and is_rank_zero() else "read (rank 0 wrote it)" if store else "not stored"
    )
    log.info("Cache %s: %s (%s)", done, path, kind)
    return value, use


def entry_lock(path: Path) -> FileLock:
    """The lock of the entry at ``path`` (``<root>/<kind>/<entry>``): ``<root>/locks/<kind>/<entry>.lock``,
    an OS lock that is released when its process dies."""
    lock_dir = path.parent.parent / LOCKS / path.parent.name
    lock_dir.mkdir(parents=True, exist_ok=True)
    return FileLock(str(lock_dir / f"{path.name}.lock"))


def _marker(tmp: Path, kind: str, name: str, key: dict, meta: dict) -> dict:
    files = sorted(p for p in tmp.rglob("*") if p.is_file() and p.name != MARKER)
    sums = {p.relative_to(tmp).as_posix(): {"size": p.stat().st_size, "sha256": file_sha256(p)} for p in files}
    return {"kind": kind, "name": name, "key": key, "meta": meta, "files": sums}


def intact(path: Path) -> bool:
    """Whether the entry at ``path`` is complete and unchanged: its marker is there and every file it
    records has the recorded size and sha256 (an entry written before checksums were recorded counts as
    intact). A damaged entry is named in the log, and rebuilt by the caller."""
    marker = path / MARKER
    if not marker.is_file():
        return False
    try:
        files = json.loads(marker.read_text()).get("files")
    except (json.JSONDecodeError, UnicodeDecodeError):
        log.warning("Cache entry %s: its %s is not valid JSON; rebuilding it", path, MARKER)
        return False
    for rel, want in (files or {}).items():
        f = path / rel
        got = f.stat().st_size if f.is_file() else None
        if got != want["size"] or file_sha256(f) != want["sha256"]:
            what = (
                "missing"
                if got is None
                else f"{got} bytes, recorded {want['size']}"
                if got != want["size"]
                else "its sha256 differs"
            )
            log.warning("Cache entry %s is damaged (%s: %s); rebuilding it", path, rel, what)
            return False
    return True


def _load(path: Path, load: Callable[[Path], T]) -> T:
    try:
        return load(path)
    except Exception as e:
        raise CacheEntryError(
            f"cache entry {path} could not be read ({type(e).__name__}: {e}); delete that dir, or rerun with "
            "use_teacher_cache=false (teachers) / use_student_cache=false (students) to rebuild it"
        ) from e


def _remove_temps(path: Path) -> None:
    """Remove the temp and replaced dirs of the entry at ``path`` (callers hold its lock)."""
    for tmp in path.parent.glob(f".{path.name}.*"):
        if tmp.is_dir() and (tmp.name.endswith(".tmp") or ".old." in tmp.name):
            shutil.rmtree(tmp, ignore_errors=True)


def clean_stale(root: str | Path) -> list[str]:
    """Remove what processes that are gone left in the cache: the temp dirs of entries nobody is building
    (their lock is free) and the run temp dirs of :func:`run_tempdir` whose lock is free.

    Returns:
        the paths removed.
    """
    root, removed = Path(root), []
    for tmp in sorted(root.glob("*/.*.tmp")) + sorted(root.glob("*/.*.old.*")):
        name = tmp.name[1:]  # atomic_dir's .<entry>.<random>.tmp, or .<entry>.old.<pid>
        entry = tmp.parent / (name.rsplit(".old.", 1)[0] if ".old." in name else name[: -len(".tmp")].rsplit(".", 1)[0])
        with contextlib.suppress(Timeout), entry_lock(entry).acquire(timeout=0):
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
            removed.append(str(tmp))
    for run_dir in sorted(p for p in (root / TMP).glob("*") if p.is_dir()):
        with contextlib.suppress(Timeout), FileLock(f"{run_dir}.lock").acquire(timeout=0):
            shutil.rmtree(run_dir, ignore_errors=True)
            removed.append(str(run_dir))
    if removed:
        log.info("Removed %d temp dir(s) left in the cache by processes that are gone: %s", len(removed), removed)
    return removed


@contextlib.contextmanager
def run_tempdir(root: str | Path) -> Iterator[Path]:
    """This process's temp dir ``<root>/tmp/<host>-<pid>-*``, held under a lock while it runs: every
    ``tempfile`` call (ONNX exports, calibration, W&B) and every subprocess (``TMPDIR``) writes there.
    Stale dirs are cleaned first (:func:`clean_stale`); this one is removed on exit."""
    base = Path(root) / TMP
    base.mkdir(parents=True, exist_ok=True)
    clean_stale(root)
    run_dir = Path(tempfile.mkdtemp(dir=base, prefix=f"{socket.gethostname()}-{os.getpid()}-"))
    lock = FileLock(f"{run_dir}.lock")
    before = tempfile.tempdir, os.environ.get("TMPDIR")
    with lock:
        tempfile.tempdir, os.environ["TMPDIR"] = str(run_dir), str(run_dir)
        try:
            yield run_dir
        finally:
            tempfile.tempdir = before[0]
            if before[1] is None:
                os.environ.pop("TMPDIR", None)
            else:
                os.environ["TMPDIR"] = before[1]
            shutil.rmtree(run_dir, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"{run_dir}.lock")


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
