"""Multi-teacher soft targets, tfidf_lr as a teacher, and the augmented transfer set."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bertcompress.data.augment import GENERATORS, TRANSFER_ID_BASE, build_transfer_set, read_unlabeled
from bertcompress.distill.losses import SoftTargetLoss
from bertcompress.distill.multi_teacher import (
    check_weights,
    ensemble_log_probs,
    ensemble_probs,
    ensemble_soft_logits,
    out_of_fold_logits,
    tune_class_bias,
    tune_weights,
)
from bertcompress.models.tfidf import TfidfLR
from bertcompress.pipeline import run
from tests.conftest import compose, requires_ubmec

ALL = {
    "mask": {"multiplier": 1.0, "p": 0.3},
    "ngram": {"multiplier": 1.0},
    "shuffle": {"multiplier": 1.0},
    "mix": {"multiplier": 1.0},
}


def test_two_teacher_soft_targets_match_a_hand_computation():
    z1 = np.array([[2.0, 0.0, -1.0]])
    z2 = np.array([[0.0, 1.0, 0.0]])
    t, w = 2.0, (0.25, 0.75)
    p1 = np.exp(z1[0] / t) / np.exp(z1[0] / t).sum()
    p2 = np.exp(z2[0] / t) / np.exp(z2[0] / t).sum()
    expected = 0.25 * p1 + 0.75 * p2
    assert np.allclose(ensemble_probs([z1, z2], w, t)[0], expected)
    soft = ensemble_soft_logits([z1, z2], w, t)
    # the soft-target loss sees softmax(soft / T) = the ensemble distribution
    assert np.allclose(torch.softmax(torch.from_numpy(soft) / t, -1).numpy()[0], expected, atol=1e-6)
    assert np.allclose(check_weights([1, 3], 2), w)
    with pytest.raises(ValueError, match="2 values for 3 teachers"):
        check_weights([0.5, 0.5], 3)
    with pytest.raises(ValueError, match="non-negative"):
        check_weights([-1, 2], 2)


def test_weights_tuned_on_validation_prefer_the_better_teacher():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    good = np.eye(3)[y] * 3 + rng.normal(0, 1, (200, 3))  # mostly right
    noise = rng.normal(0, 1, (200, 3))  # chance
    w, f1 = tune_weights([noise, good], y, step=0.25)
    assert w[1] > w[0] and f1 > 80


def test_class_bias_tuning_restores_an_under_predicted_class():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    z = np.eye(3)[y] * 2 + rng.normal(0, 1, (600, 3))
    z[:, 2] -= 2.0  # class 2 is rarely predicted: its recall, and macro-F1, suffer
    before = f1_macro(y, z.argmax(-1))
    bias, f1 = tune_class_bias(z, y, step=0.1, limit=3.0)
    assert f1 > before + 5 and f1 == pytest.approx(f1_macro(y, (z + bias).argmax(-1)))
    assert int(np.argmax(bias)) == 2 and abs(sum(bias)) < 1e-9  # centred: a common shift changes nothing
    # a decision rule that is already right everywhere is left alone
    perfect = np.eye(3)[y] * 5.0
    assert tune_class_bias(perfect, y)[0] == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="do not match"):
        tune_class_bias(z[:10], y)
    with pytest.raises(ValueError, match="step"):
        tune_class_bias(z, y, step=0.0)


def test_soft_targets_with_class_bias_match_a_hand_computation():
    z1, z2 = np.array([[2.0, 0.0, -1.0]]), np.array([[0.0, 1.0, 0.0]])
    t, w, b = 2.0, (0.5, 0.5), np.array([0.3, -0.1, -0.2])
    p = ensemble_probs([z1, z2], w, t)[0] * np.exp(b / t)
    soft = ensemble_soft_logits([z1, z2], w, t, b)
    # softmax at T of the soft logits is p̄_T · exp(b / T), renormalised: the temperature softens the
    # offsets (logit units) as it softens the logits; the prediction is argmax(log p̄ + b)
    assert np.allclose(torch.softmax(torch.from_numpy(soft) / t, -1).numpy()[0], p / p.sum(), atol=1e-6)
    assert np.allclose(ensemble_soft_logits([z1, z2], w, 1.0, b), ensemble_log_probs([z1, z2], w, 1.0, b))
    assert np.allclose(ensemble_log_probs([z1, z2], w, t, b)[0], np.log(ensemble_probs([z1, z2], w, t)[0]) + b)
    with pytest.raises(ValueError, match="2 values for 3 classes"):
        ensemble_log_probs([z1, z2], w, class_bias=[0.1, 0.2])


def f1_macro(y, preds) -> float:
    from sklearn.metrics import f1_score

    return 100.0 * f1_score(y, preds, average="macro")


def test_tfidf_teacher_train_logits_are_out_of_fold(ubmec_texts):
    texts = ubmec_texts[:90]
    labels = [i % 3 for i in range(90)]
    oof = out_of_fold_logits(lambda: TfidfLR(min_df=1), texts, labels, ["a", "b", "c"], folds=3)
    full = TfidfLR(min_df=1).fit(texts, labels, ["a", "b", "c"]).logits(texts)
    in_sample = (full.argmax(1) == np.array(labels)).mean()
    held_out = (oof.argmax(1) == np.array(labels)).mean()
    assert oof.shape == (90, 3) and in_sample > held_out  # the fitted model has seen its own texts


def test_generators_are_deterministic_and_never_emit_val_or_test_text(ubmec_texts):
    train, test = ubmec_texts[:80], ubmec_texts[80:120]
    # a test text that a generator can reproduce exactly: a train text whose n-gram spans all its words
    short_test = " ".join(train[0].split()[:3])
    forbidden = [*test, short_test]
    a = build_transfer_set(train, forbidden, ALL, seed=3, mask_token="<mask>")
    b = build_transfer_set(train, forbidden, ALL, seed=3, mask_token="<mask>")
    c = build_transfer_set(train, forbidden, ALL, seed=4, mask_token="<mask>")
    assert a.texts == b.texts and a.texts != c.texts
    assert set(a.report["generated"]) == set(GENERATORS)
    normed = {" ".join(t.split()) for t in forbidden}
    assert not normed & set(a.texts)
    assert any("<mask>" in t for t in a.texts)
    assert a.ids()[0] == TRANSFER_ID_BASE
    with pytest.raises(ValueError, match="unknown generator"):
        build_transfer_set(train, [], {"backtranslate": {}})


def test_unlabeled_file_joins_the_transfer_set_minus_test_texts(tmp_path, ubmec_texts):
    f = tmp_path / "unlabeled.txt"
    f.write_text("\n".join([ubmec_texts[200], ubmec_texts[201], ubmec_texts[300]]), encoding="utf-8")
    t = build_transfer_set(ubmec_texts[:10], [ubmec_texts[300]], {}, unlabeled={"unlabeled_file": read_unlabeled(f)})
    assert t.report["generated"] == {"unlabeled_file": 2} and t.report["dropped_equal_to_val_or_test"] == 1
    with pytest.raises(FileNotFoundError, match=r"augment.unlabeled_file=.*missing.txt: no such file"):
        read_unlabeled(tmp_path / "missing.txt")


def test_ce_term_is_skipped_for_unlabeled_examples():
    loss = SoftTargetLoss("kl", temperature=2.0, alpha=0.5)
    s = torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]])
    t = torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])
    total, kd, ce = loss(s, t, torch.tensor([0, -100]))
    assert ce == pytest.approx(torch.nn.functional.cross_entropy(s[:1], torch.tensor([0])).item())
    total_u, kd_u, ce_u = loss(s, t, torch.tensor([-100, -100]))
    assert ce_u == 0 and total_u == pytest.approx(0.5 * kd_u.item())


@requires_ubmec
def test_multi_teacher_with_tfidf_and_augmentation_runs_end_to_end(tmp_path, tiny_run_overrides):
    overrides = [
        *tiny_run_overrides,
        "teacher_ensemble=me5_tfidf",
        "teacher.primary=tiny_bert",
        "teacher.weight_step=0.25",
        "teacher.members.tfidf_lr.oof_folds=2",
        "student=cnn",
        "student.epochs=1",
        "augment=all",
        "baseline=none",
    ]
    results = run(compose(overrides, tmp_path))
    ens = results["teacher"]["ensemble"]
    assert ens["members"] == ["tiny_bert", "tfidf_lr"] and sum(ens["weights"]) == pytest.approx(1.0)
    assert set(ens["members_test"]) == {"tiny_bert", "tfidf_lr"}
    # the ensemble's test figures are "the teacher"; the fine-tuned primary keeps its own block, and its
    # cached logits, aligned by id, give the same test figures as testing it directly
    assert ens["members_test"]["tiny_bert"]["accuracy"] == pytest.approx(results["teacher"]["primary_test"]["accuracy"])
    assert results["teacher"]["test"]["n"] == results["teacher"]["primary_test"]["n"]
    assert results["retention"]["macro_f1"] == pytest.approx(
        results["student"]["test"]["macro_f1"] / results["teacher"]["test"]["macro_f1"]
    )
    report = results["student"]["transfer_set"]
    assert report["total"] > 0 and set(report["generated"]) == set(GENERATORS)


@requires_ubmec
def test_transformer_member_with_a_seed_and_tuned_class_bias_runs_end_to_end(tmp_path, tiny_run_overrides):
    from omegaconf import OmegaConf, open_dict

    from bertcompress.stages.teacher import ENSEMBLE_KEYS

    cfg = compose(
        [*tiny_run_overrides, "teacher_ensemble=me5_tfidf", "teacher.primary=tiny_bert", "teacher.weight_step=0.25",
         "teacher.members.tfidf_lr.oof_folds=2", "+teacher.class_bias=tune", "student=none", "baseline=none",
         "benchmark.enabled=false"],
        tmp_path,
    )  # fmt: skip
    with open_dict(cfg):
        plain = {k: v for k, v in OmegaConf.to_container(cfg.teacher).items() if k not in ENSEMBLE_KEYS}
        member = {**plain, "name": "tiny_bert", "kind": "transformer", "seed": 3, "max_length": 24}
        cfg.teacher.members = {"tiny_seed3": member}
    results = run(cfg)
    ens = results["teacher"]["ensemble"]
    assert ens["members"] == ["tiny_bert", "tiny_seed3"]
    # the member is a second fine-tune: its own seed and length, the job's split, cached like a plain run of it
    metas = [json.loads(p.read_text()) for p in (tmp_path / "cache" / "teachers").glob("tiny_bert-*/cache.json")]
    assert sorted((m["key"]["seed"], m["key"]["max_length"]) for m in metas) == [(3, 24), (42, 32)]
    assert metas[0]["key"]["data"] == metas[1]["key"]["data"] and metas[0]["key"]["data"]["seed"] == 42
    # each fit kept its resumable checkpoints beside its own cache key, removed once it was cached
    partial = tmp_path / "cache" / "partial" / "teachers"
    assert partial.is_dir() and not list(partial.iterdir())
    bias = ens["class_bias"]
    assert len(bias) == 6 and abs(sum(bias)) < 1e-9
    # tuning starts from zero offsets, so it never lowers the validation macro-F1 the weights reached
    assert ens["class_bias_tuned_val_macro_f1"] >= ens["weights_tuned_val_macro_f1"] - 1e-9


@requires_ubmec
def test_member_and_class_bias_keys(tmp_path):
    """A seeded member is keyed like a plain run with that seed on the job's split; class_bias joins a
    student's key only when set (students cached before it existed keep their keys)."""
    import hydra
    from omegaconf import OmegaConf

    from bertcompress.stages.ensemble import member_config
    from bertcompress.stages.student import student_cache_key
    from bertcompress.stages.teacher import teacher_cache_key

    data = ["data.limit_train=64", "data.limit_val=32", "data.limit_test=32"]
    grid_best = ["teacher=me5_small", "teacher.module.pooling=cls", "+teacher.module.layer_lr_decay=0.85"]
    cfg = compose(["teacher_ensemble=me5_seeds_tfidf", *data], tmp_path)
    plain = compose([*grid_best, *data], tmp_path)
    seeded = compose([*grid_best, *data, "seed=7", "data.seed=42"], tmp_path)
    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare_data()
    dm.setup()
    assert teacher_cache_key(cfg, dm) == teacher_cache_key(plain, dm)  # the primary is the grid's teacher
    assert teacher_cache_key(member_config(cfg, cfg.teacher.members.me5_seed7), dm) == teacher_cache_key(seeded, dm)
    assert teacher_cache_key(seeded, dm) != teacher_cache_key(plain, dm)
    # a member with its own max_length is keyed like a plain run with that data.max_length
    long = compose([*grid_best, *data, "data.max_length=128"], tmp_path)
    dm_long = hydra.utils.instantiate(long.data)
    dm_long.prepare_data()
    dm_long.setup()
    member = OmegaConf.create({**OmegaConf.to_container(cfg.teacher.members.me5_seed7), "seed": 42, "max_length": 128})
    mcfg = member_config(cfg, member)
    member_view = dm.view(max_length=mcfg.data.max_length)  # the member's own length, the datamodule untouched
    assert teacher_cache_key(mcfg, member_view) == teacher_cache_key(long, dm_long)
    assert dm.max_length == 64 and teacher_cache_key(long, dm_long) != teacher_cache_key(plain, dm)

    class Primary:  # student_cache_key reads only the primary's cache dir name
        cache_dir = tmp_path / "teachers" / "me5_small-x"

    assert student_cache_key(cfg, dm, Primary)["ensemble"]["class_bias"] == "tune"
    assert (
        "class_bias"
        not in student_cache_key(compose(["teacher_ensemble=me5_tfidf", *data], tmp_path), dm, Primary)["ensemble"]
    )
