"""Same seed, same result, whatever the cache state: per-stage seeds (bertcompress.utils.seeding)."""

from __future__ import annotations

import shutil

import pytest
import torch

from bertcompress.models import resolver
from bertcompress.pipeline import run
from bertcompress.utils.seeding import seed_stage, stage_seed
from tests.conftest import compose, requires_ubmec


def test_stage_seeds_are_stable_and_distinct():
    assert stage_seed(42, "teacher/init") == stage_seed(42, "teacher/init")
    assert len({stage_seed(42, "teacher/init"), stage_seed(42, "teacher/fit"), stage_seed(7, "teacher/init")}) == 3
    seed_stage(42, "student/fit")
    a = torch.rand(3)
    torch.rand(100)  # whatever ran in between
    seed_stage(42, "student/fit")
    assert torch.equal(a, torch.rand(3))


@pytest.fixture
def offline_tiny(tiny_bert_dir, monkeypatch):
    """A hub id served by a fake offline package whose first use 'converts' the model (drawing from the
    global RNG, as a from-config model init does) into ``<cache_dir>/offline``; later uses find it there."""
    hub_id = "tests/tiny-offline-bert"
    conversions = []

    def materialize(cache_dir):
        out = cache_dir / "offline" / "tiny-offline-bert"
        if not (out / "config.json").is_file():
            torch.randn(10_000)  # the conversion's random init
            shutil.copytree(tiny_bert_dir, out)
            conversions.append(out)
        return out

    monkeypatch.setitem(resolver.OFFLINE_PACKAGES, hub_id, resolver.OfflinePackage("tiny-offline", "json", materialize))
    return hub_id, conversions


@requires_ubmec
def test_cold_and_warm_caches_give_identical_results(tmp_path, tiny_run_overrides, offline_tiny):
    """A cold cache (the offline model converted, teacher and student trained) and a warm one (the model
    found on disk, teacher and student trained again) give identical metrics; so do two cold runs."""
    hub_id, conversions = offline_tiny
    overrides = [o for o in tiny_run_overrides if not o.startswith("teacher.hub_id=")]
    overrides += [f"teacher.hub_id={hub_id}", "student=cnn", "student.epochs=1", "baseline=none"]
    overrides += ["benchmark.enabled=false", "use_teacher_cache=false", "use_student_cache=false"]

    def metrics(results):  # the val figures too: a tiny model's test predictions can all be one class
        t, s = results["teacher"], results["student"]
        return t["test"]["macro_f1"], t["best_val_macro_f1"], s["test"]["macro_f1"], s["best_val_macro_f1"]

    cold = run(compose(overrides, tmp_path / "a"))
    assert len(conversions) == 1
    warm = run(compose(overrides, tmp_path / "a"))  # the converted model is on disk now
    assert len(conversions) == 1
    cold_again = run(compose(overrides, tmp_path / "b"))
    assert len(conversions) == 2
    assert metrics(cold) == metrics(warm) == metrics(cold_again)
    for key in ("per_class", "confusion_matrix"):
        assert cold["final_test"][key] == warm["final_test"][key] == cold_again["final_test"][key]
