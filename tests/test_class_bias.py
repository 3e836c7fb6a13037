"""Post-hoc per-class offsets (student.class_bias): folded into the logit layer, tuned on val, not cached."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bertcompress.models.students import (
    HFStudent,
    StaticEmbedding,
    cnn_student,
    ensemble_student,
    fold_class_bias,
)
from bertcompress.pipeline import run
from tests.conftest import compose, requires_ubmec

BATCH = {"input_ids": torch.randint(0, 50, (4, 7)), "attention_mask": torch.ones(4, 7, dtype=torch.long)}
BIAS = [0.5, -0.25, -0.25]


@pytest.mark.parametrize("kind", ["cnn", "ensemble", "hf"])
def test_folded_class_bias_shifts_the_logits_exactly(kind, tiny_bert_dir):
    torch.manual_seed(0)
    emb = StaticEmbedding(torch.randn(50, 8))
    if kind == "cnn":
        model = cnn_student(emb, 3, num_filters=4)
    elif kind == "ensemble":  # learned member weights: they sum to 1, so the shift passes through
        model = ensemble_student(emb, 3, combine="learned", hidden_size=8, num_filters=4)
        with torch.no_grad():
            model.member_logit_weights.copy_(torch.tensor([0.3, -1.0, 0.7]))
    else:
        from transformers import AutoModelForSequenceClassification

        model = HFStudent(AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=3))
    model.eval()
    with torch.no_grad():
        before = model(BATCH)
        layers = fold_class_bias(model, BIAS)
        after = model(BATCH)
    assert torch.allclose(after - before, torch.tensor(BIAS).expand_as(before), atol=1e-5)
    assert len(layers) == (3 if kind == "ensemble" else 1)


def test_fold_class_bias_names_a_model_without_a_logit_layer():
    with pytest.raises(ValueError, match="no logit Linear layer with 3 outputs.*class_bias=null"):
        fold_class_bias(torch.nn.Sequential(torch.nn.Linear(4, 5)), BIAS)


def _artifact_logits(results: dict, texts: list[str]):
    from bertcompress.artifacts import load_artifact

    predictor = load_artifact(results["artifact"])
    return np.concatenate([predictor.logits(b) for b in predictor.batches(texts, 16)])


@requires_ubmec
def test_student_class_bias_is_tuned_on_val_and_not_cached(tmp_path, tiny_run_overrides, ubmec_texts):
    """What tuning guarantees, one setting changed (``student.class_bias``): offsets are nonzero only when
    they raised validation macro-F1, and the shipped student's logits are the untuned one's + the offsets."""
    base = [*tiny_run_overrides, "student=cnn", "student.epochs=2", "baseline=none", "benchmark.enabled=false"]
    texts = ubmec_texts[-40:]
    tuned = run(compose([*base, "student.class_bias=tune"], tmp_path))
    tuned_logits = _artifact_logits(tuned, texts)
    cb = tuned["student"]["class_bias"]
    assert len(cb["offsets"]) == 6 and cb["layers"] == ["classifier"]
    if any(abs(x) > 0 for x in cb["offsets"]):
        assert cb["val_macro_f1"] > cb["val_macro_f1_before"]
    else:
        assert cb["val_macro_f1"] == cb["val_macro_f1_before"]
    # the cache holds the student without offsets: the same job without them is a cache hit
    plain = run(compose(base, tmp_path))
    assert plain["student"]["cache_hit"] and plain["student"]["class_bias"] is None
    assert plain["student"]["cache_dir"] == tuned["student"]["cache_dir"]
    offsets = np.asarray(cb["offsets"], dtype=np.float32)
    assert np.abs(tuned_logits - _artifact_logits(plain, texts) - offsets).max() < 1e-5
    with pytest.raises(ValueError, match="student.class_bias='yes'"):
        run(compose([*base, "student.class_bias=yes"], tmp_path))
