"""Unlabeled pools in the transfer set: one reader, the choice of pool texts from the teacher's predictions,
and the pools end to end in a tiny distillation."""

from __future__ import annotations

import numpy as np
import pytest

from bertcompress.data.augment import read_unlabeled, select_unlabeled
from bertcompress.pipeline import run
from tests.conftest import DATA_DIR, compose, requires_ubmec

POOLS = DATA_DIR / "unlabeled_bn"
requires_pools = pytest.mark.skipif(not POOLS.is_dir(), reason=f"{POOLS} not found; set BERTCOMPRESS_DATA_DIR")


@requires_pools
def test_the_pools_are_read_by_their_text_column_only():
    news = read_unlabeled(POOLS / "bnlp_news_sentences" / "sentences.tsv")
    comments = read_unlabeled(POOLS / "blp25_banglamultihate" / "texts.tsv")
    assert len(news) == 20_191 and len(comments) == 15_218
    assert all(isinstance(t, str) and t.strip() for t in news[:100])
    assert not {"dev", "train", "test"} & set(news[:1000])  # the split column is not read as text


def test_a_text_file_and_a_table_go_through_the_same_reader(tmp_path):
    (tmp_path / "lines.txt").write_text("এক\nদুই\n", encoding="utf-8")
    (tmp_path / "table.tsv").write_text("label\ttext\njoy\tএক\nanger\tদুই\n", encoding="utf-8")
    assert read_unlabeled(tmp_path / "lines.txt") == read_unlabeled(tmp_path / "table.tsv") == ["এক", "দুই"]
    with pytest.raises(ValueError, match="no column 'sentence'"):
        read_unlabeled(tmp_path / "table.tsv", text_column="sentence")


def test_selection_by_confidence_class_balance_and_cap_by_hand():
    # 2 generated texts, then 6 pool texts; classes 0/1/2 predicted with these top probabilities
    probs = np.array([
        [0.9, 0.05, 0.05], [0.2, 0.7, 0.1],                      # generated: always kept
        [0.8, 0.1, 0.1], [0.6, 0.2, 0.2], [0.1, 0.85, 0.05],     # pool: class 0, 0, 1
        [0.3, 0.4, 0.3], [0.05, 0.05, 0.9], [0.1, 0.1, 0.8],     # pool: class 1 (low), 2, 2
    ])  # fmt: skip
    sources = ["mask", "ngram"] + ["pool"] * 6
    keep, report = select_unlabeled(probs, sources, ["pool"], min_confidence=0.5)
    assert keep == [0, 1, 2, 3, 4, 6, 7] and report["dropped_low_confidence"] == 1
    keep, report = select_unlabeled(probs, sources, ["pool"], min_confidence=0.5, balance=True, seed=0)
    assert report["per_class"] == 1 and report["predicted_classes_kept"] == {0: 1, 1: 1, 2: 1}
    assert keep[:2] == [0, 1] and 4 in keep and len(keep) == 5
    keep, _ = select_unlabeled(probs, sources, ["pool"], max_texts=2, seed=0)
    assert len(keep) == 4 and keep[:2] == [0, 1]
    with pytest.raises(ValueError, match="min_confidence=1.5"):
        select_unlabeled(probs, sources, ["pool"], min_confidence=1.5)


@pytest.mark.slow  # labels all 20k news sentences with the teacher (35 s on a quiet 2-core machine)
@requires_ubmec
@requires_pools
def test_pools_join_the_transfer_set_labelled_by_the_teacher(tmp_path, tiny_run_overrides):
    base = [*tiny_run_overrides, "student=cnn", "student.epochs=1", "baseline=none", "benchmark.enabled=false"]
    capped = run(compose([*base, "augment=unlabeled_bn", "augment.unlabeled.max_texts=30"], tmp_path))
    report = capped["student"]["transfer_set"]
    assert report["total"] == 30 and set(report["generated"]) <= {"blp25_banglamultihate", "bnlp_news_sentences"}
    chosen = run(
        compose(
            [*base, "augment=unlabeled_bn", "augment.unlabeled.use=[bnlp_news_sentences]", "augment.unlabeled.balance=true",
             "augment.unlabeled.max_texts=60", "student.seed=3"],
            tmp_path,
        )
    )  # fmt: skip
    picked = chosen["student"]["transfer_set"]
    assert picked["generated"] == {"bnlp_news_sentences": 20_191}  # every pool text was labelled first
    per_class = picked["selection"]["per_class"]
    assert picked["total"] == sum(picked["selection"]["predicted_classes_kept"].values()) <= 60
    assert set(picked["selection"]["predicted_classes_kept"].values()) == {per_class}
    assert chosen["teacher"]["cache_hit"] is True  # another student seed and transfer set: the same teacher


@requires_ubmec
@requires_pools
def test_a_static_students_vocabulary_keeps_the_transfer_sets_tokens(tmp_path, tiny_run_overrides):
    """The vocabulary is cut after the transfer set exists: pool texts add the pieces only they use, and
    ``student.embedding.keep`` keeps the N pieces most frequent in a reference corpus, or the whole table."""
    base = [*tiny_run_overrides, "student=cnn", "student.epochs=1", "baseline=none", "benchmark.enabled=false"]
    base.append("data.eval_sets.banemo_dev=null")
    plain = run(compose(base, tmp_path))["student"]["info"]["embedding"]
    pools = run(compose([*base, "augment=unlabeled_bn", "augment.unlabeled.max_texts=200"], tmp_path))
    emb = pools["student"]["info"]["embedding"]
    assert emb["corpus_texts"] > plain["corpus_texts"] and emb["kept_vocab"] > plain["kept_vocab"]
    reference = tmp_path / "reference.txt"
    reference.write_text(
        "\n".join(read_unlabeled(POOLS / "bnlp_news_sentences" / "sentences.tsv")[:500]), encoding="utf-8"
    )
    top = run(compose([*base, f"+student.embedding.keep={{top_n:50,reference:{reference}}}"], tmp_path))
    assert plain["kept_vocab"] < top["student"]["info"]["embedding"]["kept_vocab"] <= plain["kept_vocab"] + 50
    whole = run(compose([*base, "+student.embedding.keep=all"], tmp_path))["student"]["info"]["embedding"]
    assert whole["kept_vocab"] == whole["teacher_vocab"] == 800
    with pytest.raises(ValueError, match=r"student\.embedding\.keep='most'"):
        run(compose([*base, "+student.embedding.keep=most"], tmp_path))
