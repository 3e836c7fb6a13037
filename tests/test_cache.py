"""Runs that share a cache: an entry is built once under its lock while a second process waits and reads
it; checksums name a damaged entry and rebuild it; entries written without checksums still load; temp
files go in the cache's own tmp/, and what dead processes left is removed at start."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from bertcompress.utils.cache import CacheEntryError, clean_stale, entry_lock, load_or_build, run_tempdir
from tests.conftest import ROOT

KEY = {"teacher": "tiny", "seed": 7}

# one process: build the entry with a slow fit that keeps a partial checkpoint and removes it when done
# (what a teacher fit does), or read it
BUILDER = textwrap.dedent(
    """
    import json, os, shutil, sys, time
    from pathlib import Path
    from bertcompress.utils.cache import load_or_build
    root, log = Path(sys.argv[1]), Path(sys.argv[2])

    def build(tmp):
        partial = root / "partial" / "teachers" / "tiny"
        partial.mkdir(parents=True, exist_ok=True)
        (partial / "best-epoch00.ckpt").write_text(str(os.getpid()))
        time.sleep(1.5)
        (tmp / "model.safetensors").write_text((partial / "best-epoch00.ckpt").read_text())
        shutil.rmtree(partial)
        with open(log, "a") as f:
            f.write(f"built {os.getpid()}\\n")
        return {"builder": os.getpid()}

    value, use = load_or_build(root, "teachers", "tiny", {"teacher": "tiny", "seed": 7}, build,
                               lambda p: (p / "model.safetensors").read_text())
    print(json.dumps({"value": value, "hit": use.cache_hit}))
    """
)


def _text_entry(root: Path, text: str = "weights", key: dict = KEY, calls: list | None = None):
    def build(tmp: Path) -> dict:
        (tmp / "model.safetensors").write_text(text)
        if calls is not None:
            calls.append(text)
        return {}

    return load_or_build(root, "teachers", "tiny", key, build, lambda p: (p / "model.safetensors").read_text())


def test_two_processes_that_need_one_uncached_entry_build_it_once(tmp_path):
    log = tmp_path / "builds.log"
    cmd = [sys.executable, "-c", BUILDER, str(tmp_path / "cache"), str(log)]
    procs = [
        subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    results = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    assert len(log.read_text().splitlines()) == 1  # the second waited for the first, then read its entry
    builder = log.read_text().split()[1]
    assert [r["value"] for r in results] == [builder, builder]
    assert sorted(r["hit"] for r in results) == [False, True]


def test_a_damaged_entry_is_named_and_rebuilt(tmp_path, caplog):
    calls: list = []
    value, use = _text_entry(tmp_path, "v1", calls=calls)
    recorded = json.loads((Path(use.path) / "cache.json").read_text())["files"]
    assert recorded == {"model.safetensors": {"size": 2, "sha256": recorded["model.safetensors"]["sha256"]}}
    (Path(use.path) / "model.safetensors").write_text("v")  # truncated
    value, use = _text_entry(tmp_path, "v2", calls=calls)
    assert value == "v2" and not use.cache_hit and calls == ["v1", "v2"]
    assert f"Cache entry {use.path} is damaged (model.safetensors: 1 bytes, recorded 2)" in caplog.text
    (Path(use.path) / "model.safetensors").write_text("v3")  # same size, other bytes
    value, use = _text_entry(tmp_path, "v4", calls=calls)
    assert value == "v4" and "its sha256 differs" in caplog.text


def test_an_entry_without_checksums_still_loads_and_gains_them_when_rewritten(tmp_path):
    _, use = _text_entry(tmp_path, "old")
    marker = Path(use.path) / "cache.json"
    doc = json.loads(marker.read_text())
    doc.pop("files")  # as entries were written before checksums
    marker.write_text(json.dumps(doc))
    value, use = _text_entry(tmp_path, "unused")
    assert value == "old" and use.cache_hit
    load_or_build(
        tmp_path,
        "teachers",
        "tiny",
        KEY,
        lambda t: (t / "model.safetensors").write_text("new"),
        lambda p: 0,
        reuse=False,
    )
    assert "files" in json.loads(marker.read_text())


def test_an_entry_that_cannot_be_read_names_itself_and_the_fix(tmp_path):
    _text_entry(tmp_path, "ok")

    def broken(path):
        raise OSError("header too large")

    with pytest.raises(
        CacheEntryError, match=r"cache entry .*teachers/tiny-\w+ could not be read.*use_teacher_cache=false"
    ):
        load_or_build(tmp_path, "teachers", "tiny", KEY, lambda t: None, broken)


def test_stale_temp_dirs_are_removed_and_live_ones_kept(tmp_path):
    _, use = _text_entry(tmp_path)
    entry = Path(use.path)
    stale = entry.parent / f".{entry.name}.abc123.tmp"  # an atomic_dir whose process died (kill -9)
    stale.mkdir()
    busy_entry = entry.parent / "busy-0123456789ab"
    busy = entry.parent / f".{busy_entry.name}.xyz.tmp"
    busy.mkdir()
    dead_run = tmp_path / "tmp" / "host-1-dead"
    dead_run.mkdir(parents=True)
    (dead_run / "export.onnx").write_bytes(b"x")
    holder = subprocess.Popen(  # another process building busy_entry holds its lock
        [sys.executable, "-c", f"from filelock import FileLock; l = FileLock({str(entry_lock(busy_entry).lock_file)!r}); "
         "l.acquire(); print('held', flush=True); import time; time.sleep(30)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        removed = clean_stale(tmp_path)
    finally:
        holder.kill()
    assert sorted(removed) == sorted([str(stale), str(dead_run)])
    assert busy.is_dir() and not stale.exists() and not dead_run.exists()


def test_run_tempdir_holds_the_runs_temp_files_and_is_removed(tmp_path):
    with run_tempdir(tmp_path) as run_dir:
        assert Path(tempfile.gettempdir()) == run_dir and run_dir.parent == tmp_path / "tmp"
        with tempfile.NamedTemporaryFile() as f:
            assert Path(f.name).parent == run_dir
        assert clean_stale(tmp_path) == []  # a live run's dir is kept
    assert not run_dir.exists() and list((tmp_path / "tmp").iterdir()) == []
    assert Path(tempfile.gettempdir()) != run_dir


def test_what_a_process_killed_with_sigkill_left_is_removed_at_the_next_start(tmp_path):
    """A build killed mid-way (kill -9) leaves its entry's temp dir and its run temp dir (where every
    ``tempfile`` call of the run writes); the next run's start removes both and rebuilds the entry."""
    script = textwrap.dedent(
        f"""
        import tempfile, time
        from bertcompress.utils.cache import load_or_build, run_tempdir

        def build(tmp):
            (tmp / "model.safetensors").write_text("half")
            tempfile.NamedTemporaryFile(delete=False).write(b"export")
            print("building", flush=True)
            time.sleep(60)

        with run_tempdir({str(tmp_path)!r}):
            load_or_build({str(tmp_path)!r}, "teachers", "tiny", {KEY!r}, build, lambda p: None)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "building"
    proc.kill()
    proc.wait(timeout=30)
    left = sorted(p.name for p in (tmp_path / "teachers").iterdir() if p.is_dir()) + [
        p.name for p in (tmp_path / "tmp").iterdir() if p.is_dir()
    ]
    assert len(left) == 2 and any(n.endswith(".tmp") for n in left)
    with run_tempdir(tmp_path) as mine:
        assert [p for p in (tmp_path / "tmp").iterdir() if p.is_dir()] == [mine]
        assert not [p for p in (tmp_path / "teachers").iterdir() if p.is_dir()]
        value, use = _text_entry(tmp_path, "whole")
    assert value == "whole" and not use.cache_hit


@pytest.mark.slow
def test_two_train_runs_that_need_one_uncached_teacher_both_finish(tmp_path, tiny_bert_dir, ubmec_texts):
    """Two ``train.py`` runs started at once on one cache, both needing the same teacher: one fine-tunes
    it, the other waits for the entry and reads it; both finish (before, the second died on the first's
    removed partial checkpoint)."""
    import os

    data = tmp_path / "train.csv"
    labels = ["anger", "disgust", "fear", "joy", "sadness", "surprise"]
    data.write_text(
        "text,label\n"
        + "".join(f'"{t.replace(chr(34), "")}",{labels[i % 6]}\n' for i, t in enumerate(ubmec_texts[:150])),
        encoding="utf-8",
    )
    common = [
        "data=csv", f"data.train_file={data}", "seed=7", f"teacher.hub_id={tiny_bert_dir}", "teacher.name=tiny_bert",
        "teacher.epochs=2", "teacher.module.freeze_word_embeddings=false", "data.max_length=32", "logger=csv",
        "callbacks.progress_bar=null", "benchmark.enabled=false", "hardware.threads=1",
    ]  # fmt: skip
    env = {**os.environ, "BERTCOMPRESS_CACHE_DIR": str(tmp_path / "cache"), "WANDB_MODE": "offline"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "train.py"),
                *common,
                f"hydra.run.dir={tmp_path / name}",
                f"paths.log_dir={tmp_path}",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for name in ("a", "b")
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-3000:] for o in outs]
    logs = "".join((tmp_path / name / "train.log").read_text() for name in ("a", "b"))
    teacher = next((tmp_path / "cache" / "teachers").glob("tiny_bert-*"))
    assert logs.count(f"Cache written: {teacher} ") == 1 and logs.count(f"Cache hit: {teacher} ") == 1
    results = [json.loads((tmp_path / name / "results.json").read_text()) for name in ("a", "b")]
    tests = [{k: v for k, v in r["teacher"]["test"].items() if k != "from_cache"} for r in results]
    assert tests[0] == tests[1]
