"""Multi-teacher soft targets, tfidf_lr as a teacher, and the augmented transfer set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bertcompress.data.augment import GENERATORS, TRANSFER_ID_BASE, build_transfer_set
from bertcompress.distill.losses import SoftTargetLoss
from bertcompress.distill.multi_teacher import (
    check_weights,
    ensemble_probs,
    ensemble_soft_logits,
    out_of_fold_logits,
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
    t = build_transfer_set(ubmec_texts[:10], [ubmec_texts[300]], {}, unlabeled_file=f)
    assert t.report["generated"] == {"unlabeled_file": 2} and t.report["dropped_equal_to_val_or_test"] == 1
    with pytest.raises(FileNotFoundError, match="no such file"):
        build_transfer_set(ubmec_texts[:10], [], {}, unlabeled_file=tmp_path / "missing.txt")


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
        "teacher=me5_tfidf",
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
