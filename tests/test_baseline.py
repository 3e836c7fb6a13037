"""The classical floor: char n-gram TF-IDF + logistic regression, as a baseline row and an artifact."""

from __future__ import annotations

import numpy as np
import pytest

from bertcompress.artifacts import load_artifact
from bertcompress.models.tfidf import TfidfLR
from bertcompress.pipeline import run
from tests.conftest import compose, requires_ubmec

LABELS = ["anger", "disgust", "fear", "joy", "sadness", "surprise"]


def _fitted(ubmec_texts, **kw) -> tuple[TfidfLR, list[str]]:
    texts = ubmec_texts[:120]
    labels = [i % len(LABELS) for i in range(len(texts))]
    return TfidfLR(**kw).fit(texts, labels, LABELS), texts


def test_tfidf_lr_round_trips_through_disk(tmp_path, ubmec_texts):
    model, texts = _fitted(ubmec_texts)
    before = model.predict_proba(texts[:20])
    assert before.shape == (20, 6) and np.allclose(before.sum(1), 1.0)
    model.save(tmp_path / "tfidf")
    loaded = TfidfLR.load(tmp_path / "tfidf")
    assert np.array_equal(loaded.predict_proba(texts[:20]), before)
    assert loaded.label_names == LABELS and loaded.params == model.params
    # logits are log-probabilities: their softmax gives the probabilities back
    z = loaded.logits(texts[:20])
    e = np.exp(z - z.max(1, keepdims=True))
    assert np.allclose(e / e.sum(1, keepdims=True), before, atol=1e-5)
    # and the artifact loader benchmarks it like any other model
    predictor = load_artifact(tmp_path / "tfidf")
    assert np.allclose(predictor.predict_proba(texts[:20]), before, atol=1e-5)
    params = model.num_parameters()
    assert params["non_embedding"] == 6 * params["embedding"] + 6  # coef (C x n-grams) + intercepts


def test_subword_tfidf_lr_counts_token_ids_and_ships_its_tokenizer(tmp_path, ubmec_texts, tiny_tokenizer_dir):
    import shutil

    from transformers import AutoTokenizer

    source = shutil.copytree(tiny_tokenizer_dir, tmp_path / "tok")
    model, texts = _fitted(ubmec_texts, analyzer="subword", tokenizer=str(source), ngram_range=(1, 2), min_df=1)
    vocab = model.pipeline[0].vocabulary_
    tok = AutoTokenizer.from_pretrained(source)
    first = tok(texts[0], add_special_tokens=False)["input_ids"]
    # the features are subword ids and their bigrams, without [CLS]/[SEP]
    assert str(first[0]) in vocab and f"{first[0]} {first[1]}" in vocab
    assert str(tok.cls_token_id) not in vocab and all(k.replace(" ", "").isdigit() for k in vocab)
    before = model.predict_proba(texts[:20])
    model.save(tmp_path / "subword")
    shutil.rmtree(source)  # the artifact carries its own tokenizer
    loaded = TfidfLR.load(tmp_path / "subword")
    assert np.array_equal(loaded.predict_proba(texts[:20]), before)
    assert loaded.params == model.params and loaded.params["tokenizer"] == str(source)
    shutil.rmtree(tmp_path / "subword" / "tokenizer")
    with pytest.raises(FileNotFoundError, match="tokenizer/ dir"):
        TfidfLR.load(tmp_path / "subword")


def test_tfidf_lr_bad_input_is_rejected(ubmec_texts):
    with pytest.raises(ValueError, match="analyzer"):
        TfidfLR(analyzer="bytes")
    with pytest.raises(ValueError, match="ngram_range"):
        TfidfLR(ngram_range=(5, 2))
    with pytest.raises(ValueError, match="needs a tokenizer"):
        TfidfLR(analyzer="subword")
    with pytest.raises(ValueError, match=r"\['surprise'\] have no training text"):
        TfidfLR().fit(ubmec_texts[:10], [0, 1, 2, 3, 4] * 2, LABELS)
    with pytest.raises(FileNotFoundError, match="not a tfidf_lr artifact"):
        TfidfLR.load(".")


@requires_ubmec
def test_every_run_measures_the_floor_beside_its_final_model(tmp_path, tiny_run_overrides):
    results = run(compose(tiny_run_overrides, tmp_path))
    base = results["baseline"]
    assert base["name"] == "tfidf_lr" and base["cache_hit"] is False and base["fit_time_s"] > 0
    bench = base["benchmark"]
    assert bench["latency_ms"]["p50"] > 0 and bench["size_mb"] > 0 and bench["speedup"] > 0
    # one interleaved loop per job: the fp32 teacher timed once, the floor's ratios against that timing
    assert "reference" not in bench
    ref = results["benchmark"]["reference"]
    assert bench["speedup"] == pytest.approx(ref["latency_ms"]["p50"] / bench["latency_ms"]["p50"])
    assert bench["compression_ratio"] == pytest.approx(ref["size_mb"] / bench["size_mb"])
    assert bench["machine"] == results["benchmark"]["machine"] and "extra" not in results["benchmark"]
    assert 0 <= base["test"]["macro_f1"] <= 100 and base["params"]["total"] > 0
    assert results["beats_baseline"] == (results["macro_f1"] > base["test"]["macro_f1"])
    again = run(compose(tiny_run_overrides, tmp_path))
    assert again["baseline"]["cache_hit"] is True
    assert again["baseline"]["test"] == base["test"]
    none = run(compose([*tiny_run_overrides, "baseline=none"], tmp_path))
    assert "baseline" not in none and "beats_baseline" not in none
