"""DDP: the training sampler's split, the caches under a real 2-process gloo group, the launch checks,
and (slow) a tiny teacher fine-tune, student distillation and pruning fine-tune under Lightning DDP on
the CPU against the same job in one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bertcompress.data.encoding import DistributedEpochShuffleSampler, EpochShuffleSampler
from bertcompress.utils.distributed import check_launch, world_size
from tests.conftest import FIXTURES, ROOT, UBMEC, _save_tiny, compose, requires_ubmec


def _batches(indices: list[int], size: int) -> list[list[int]]:
    return [indices[i : i + size] for i in range(0, len(indices), size)]


@pytest.mark.parametrize("n", [64, 37])
def test_ddp_sampler_gives_the_one_process_batches(n):
    """Rank r's batch k of size b, over R ranks, together make the one-process batch k of size bR."""
    one = EpochShuffleSampler(n, seed=7)
    ranks = [DistributedEpochShuffleSampler(n, 7, 2, r) for r in range(2)]
    for epoch in (0, 3):
        one.set_epoch(epoch)
        for s in ranks:
            s.set_epoch(epoch)
        order = list(one)
        assert order != list(EpochShuffleSampler(n, seed=8))  # the seed matters, and the epoch:
        assert epoch == 0 or order != EpochShuffleSampler(n, seed=7).order()
        shares = [_batches(list(s), 4) for s in ranks]
        assert len(shares[0]) == len(shares[1]) == len(ranks[0]) // 4 + bool(len(ranks[0]) % 4)
        for k, batch in enumerate(_batches(order, 8)):
            together = sorted(shares[0][k] + shares[1][k])
            if len(batch) == 8:
                assert together == sorted(batch)
            else:  # the last, short batch: padded with the order's first indices to a multiple of R
                assert set(batch) <= set(together) and len(together) == len(batch) + (-n) % 2
    assert sorted(set(list(ranks[0]) + list(ranks[1]))) == list(range(n))


def _cache_worker(rank: int, world: int, rendezvous: str, root: str, out: str) -> None:
    """One rank: two cache entries (one plain, one whose build is a collective, as a fit is), a hit,
    rank_zero_first and the end of the distributed part; what it saw goes to ``out/<rank>.json``."""
    import torch.distributed as dist

    from bertcompress.utils.cache import load_or_build
    from bertcompress.utils.distributed import leave_distributed, rank_zero_first

    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    builds: list[str] = []

    def build_plain(tmp: Path) -> dict:
        builds.append("plain")
        (tmp / "v.txt").write_text(f"plain by {rank}")
        return {"by": rank}

    def build_fit(tmp: Path) -> dict:
        builds.append("fit")
        total = torch.ones(1)
        dist.all_reduce(total)  # every rank must reach it
        (tmp / "v.txt").write_text(f"fit by {rank}, {int(total.item())} ranks")
        return {"by": rank}

    def load(path: Path) -> str:
        return (path / "v.txt").read_text()

    plain, _ = load_or_build(root, "logits", "x", {"k": 1}, build_plain, load)
    fit, _ = load_or_build(root, "students", "y", {"k": 2}, build_fit, load, collective=True)
    again, use = load_or_build(root, "logits", "x", {"k": 1}, build_plain, load)
    with rank_zero_first():
        first = (Path(root) / "first.txt").exists()
        (Path(root) / "first.txt").write_text(str(rank))
    done = leave_distributed()
    result = {"builds": builds, "plain": plain, "fit": fit, "again": again, "hit": use.cache_hit}
    (Path(out) / f"{rank}.json").write_text(json.dumps(result | {"first_found": first, "done": done}))


def test_caches_under_a_process_group_are_written_once_by_rank_0(tmp_path):
    root, out = tmp_path / "cache", tmp_path / "out"
    out.mkdir()
    rendezvous = tmp_path / "rendezvous"  # a file store: no port to pick (and race for)
    torch.multiprocessing.spawn(_cache_worker, args=(2, str(rendezvous), str(root), str(out)), nprocs=2, join=True)
    r0, r1 = (json.loads((out / f"{r}.json").read_text()) for r in (0, 1))
    assert r0["builds"] == ["plain", "fit"] and r1["builds"] == ["fit"]  # rank 1 joins the fit only
    for r in (r0, r1):  # every rank holds rank 0's entries
        assert r["plain"] == "plain by 0" and r["fit"] == "fit by 0, 2 ranks" and r["again"] == "plain by 0"
        assert r["hit"] is True
    assert not r0["first_found"] and r1["first_found"]  # rank_zero_first: rank 0 ran the block first
    assert r0["done"] is False and r1["done"] is True  # rank 0 goes on alone
    entries = sorted(p.relative_to(root).as_posix() for p in root.glob("*/*") if p.parent.name != "locks")
    assert len(entries) == 2 and entries[0].startswith("logits/x-") and entries[1].startswith("students/y-")


def test_ddp_on_cpu_composes_and_keys_its_caches_apart(tmp_path):
    from bertcompress.data.datamodule import ClassificationDataModule
    from bertcompress.stages.teacher import teacher_cache_key

    cfg = compose(["hardware=ddp", "trainer.accelerator=cpu"], tmp_path)
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.precision == "32-true" and cfg.benchmark.cuda is False
    assert cfg.hardware.threads == max(1, (os.cpu_count() or 1) // 2) and world_size(cfg) == 2
    gpu = compose(["hardware=ddp"], tmp_path)
    assert gpu.trainer.precision == "16-mixed" and gpu.benchmark.cuda is True
    one = compose(["data.limit_train=8", "data.limit_val=4", "data.limit_test=4"], tmp_path)
    assert world_size(one) == 1
    if UBMEC.is_file():
        dm: ClassificationDataModule = __import__("hydra").utils.instantiate(one.data)
        dm.setup()
        single = teacher_cache_key(one, dm)
        assert "world_size" not in single  # one process: the key one-process caches were written under
        from omegaconf import open_dict

        with open_dict(one):
            one.trainer.strategy, one.trainer.devices = "ddp", 2
        assert teacher_cache_key(one, dm) == {**single, "world_size": 2}


def test_ddp_in_a_local_multirun_is_refused(tmp_path, monkeypatch):
    import bertcompress

    cfg = compose(["hardware=ddp", "trainer.accelerator=cpu"], tmp_path)
    check_launch(cfg)  # a single run: Lightning starts the other rank
    monkeypatch.setattr(bertcompress, "is_multirun", lambda: True)
    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    with pytest.raises(ValueError, match="hardware=ddp .* in a multirun"):
        check_launch(cfg)
    monkeypatch.setenv("SLURM_NTASKS", "2")
    check_launch(cfg)  # srun starts the ranks


# ---- slow: the whole job under Lightning DDP on 2 CPU processes ----------------------------------


def _train(tmp: Path, run: str, overrides: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "BERTCOMPRESS_CACHE_DIR": str(tmp / "cache"), "WANDB_MODE": "offline"}
    cmd = [sys.executable, str(ROOT / "train.py"), *overrides, f"hydra.run.dir={tmp / run}", f"paths.log_dir={tmp}"]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


def _entry(tmp: Path, kind: str, exclude: set[Path] = frozenset()) -> Path:
    (entry,) = set((tmp / "cache" / kind).glob("*-*")) - set(exclude)
    return entry


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.mark.slow
@requires_ubmec
def test_ddp_job_on_two_cpu_processes_matches_one_process(tmp_path, ubmec_texts):
    """Teacher fine-tune, student distillation and a gradual pruning fine-tune under ``strategy=ddp``
    (gloo, 2 processes, batch 8 each) against one process with batch 16, dropout off: the same global
    batches, so the same weights up to float rounding (tolerance 1e-4) and the same test metrics
    (tolerance 0.5 points). Rank 0 alone writes the caches, the artifact, the logs and results.json."""
    from safetensors.torch import load_file

    model = _save_tiny(
        "bert",
        FIXTURES / "tiny_tokenizer",
        tmp_path / "tiny",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    common = [
        f"teacher.hub_id={model}", "teacher.name=tiny_bert", "teacher.epochs=2", "teacher.module.optimizer.lr=1e-3",
        "teacher.module.freeze_word_embeddings=false", "teacher.module.dropout=0.0",
        "data.limit_train=64", "data.limit_val=32", "data.limit_test=48", "data.max_length=32",
        "student=cnn", "student.epochs=2", "student.model.dropout=0", "student.embedding.dropout=0",
        "compression=prune", "compression.pruning.schedule=gradual",
        "logger=csv", "callbacks.progress_bar=null", "benchmark.enabled=false",
    ]  # fmt: skip
    ddp = _train(tmp_path, "ddp", [*common, "hardware=ddp", "trainer.accelerator=cpu", "data.batch_size=8"])
    assert ddp.returncode == 0, ddp.stderr[-4000:]
    log = (tmp_path / "ddp" / "train.log").read_text()
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in log
    teacher_ddp, student_ddp = _entry(tmp_path, "teachers"), _entry(tmp_path, "students")
    for entry in (teacher_ddp, student_ddp, _entry(tmp_path, "logits")):
        assert log.count(f"Cache written: {entry} ") == 1  # rank 0
    assert log.count(f"Cache read (rank 0 wrote it): {teacher_ddp} ") == 1  # rank 1 joined the fit, then read it
    assert not list((tmp_path / "cache").rglob("*.tmp")) and not list((tmp_path / "cache" / "partial").rglob("*.ckpt"))
    assert sorted(p.name for p in (tmp_path / "ddp" / "csv").iterdir()) == ["version_0"]  # logged once
    metrics = (tmp_path / "ddp" / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
    header = metrics[0].split(",")
    rows = [dict(zip(header, row.split(","), strict=True)) for row in metrics[1:]]
    assert len([r for r in rows if r["val/loss"]]) == 4  # one val row per epoch: 2 teacher + 2 student epochs
    assert len([r for r in rows if r["test/loss"]]) == 1  # the student's test, by rank 0
    results = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert results["status"] == "finished" and results["student"]["cache_hit"] is False
    assert results["compression"]["pruning"]["overall"] > 0.29

    one = _train(tmp_path, "one", [*common, "data.batch_size=16"])
    assert one.returncode == 0, one.stderr[-4000:]
    single = json.loads((tmp_path / "one" / "results.json").read_text())
    teacher_one = _entry(tmp_path, "teachers", {teacher_ddp})
    student_one = _entry(tmp_path, "students", {student_ddp})
    assert _max_diff(load_file(teacher_ddp / "model.safetensors"), load_file(teacher_one / "model.safetensors")) < 1e-4
    weights = [torch.load(e / "student.pt", weights_only=True) for e in (student_ddp, student_one)]
    assert _max_diff(*weights) < 1e-4
    artifacts = [load_file(tmp_path / run / "artifact" / "model.safetensors") for run in ("ddp", "one")]
    assert _max_diff(*artifacts) < 1e-4
    for block in ("teacher", "student"):
        for metric in ("accuracy", "macro_f1"):
            assert abs(results[block]["test"][metric] - single[block]["test"][metric]) <= 0.5
    assert abs(results["macro_f1"] - single["macro_f1"]) <= 0.5
