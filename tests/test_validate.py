"""One validation of a job's config, before any training: run and the sweep preflight give the same error."""

from __future__ import annotations

import pytest

from bertcompress.sweep import config_problem
from bertcompress.validate import validate
from tests.conftest import compose, requires_ubmec


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["student=cnn", "student.kind=convnet"], r"student.kind='convnet': expected one of \['hf', 'truncated'"),
        (["student=cnn", "student.soft_targets=live"], r"student.soft_targets='live': expected one of"),
        (["student=cnn", "student.class_bias=yes"], r"student.class_bias='yes': expected one of \[None, 'tune'\]"),
        (["student=cnn", "student.embedding.source=glove"], r"student.embedding.source='glove'"),
        (["student=cnn", "student.loss.temperature=0"], r"temperature"),
        (["student=cnn", "+student.loss.terms.hidden.weight=1"], r"student.loss.terms \(student=cnn, kind=static\)"),
        (["teacher_ensemble=me5_tfidf", "teacher.members.tfidf_lr.kind=svm"], r"teacher.members.tfidf_lr.kind=.svm."),
        (["compression=prune", "compression.pruning.amount=1.5"], r"amount"),
        (["task=ner", "student=cnn"], r"task=ner supports the static BiLSTM tagger"),
        (["task=ner", "student=bilstm", "student.soft_targets=online"], r"task=ner uses black_box"),
    ],
)
def test_a_bad_choice_is_refused_naming_its_key_by_run_and_by_the_preflight(overrides, message, tmp_path):
    cfg = compose(overrides, tmp_path)
    with pytest.raises(ValueError, match=message):
        validate(cfg)
    assert config_problem(cfg) is not None and config_problem(cfg).startswith("ValueError")


def test_every_default_choice_passes(tmp_path):
    for overrides in ([], ["student=cnn", "compression=quant_static"], ["experiment=tinybert_4l"], ["task=ner"]):
        validate(compose(overrides, tmp_path))


@requires_ubmec
def test_run_refuses_before_the_teacher_is_fine_tuned(tmp_path, tiny_run_overrides, monkeypatch):
    import bertcompress.pipeline as pipeline

    def no_teacher(*args, **kwargs):
        raise AssertionError("the teacher stage ran")

    monkeypatch.setattr(pipeline, "get_teacher", no_teacher)
    with pytest.raises(ValueError, match="student.soft_targets='live'"):
        pipeline.run(compose([*tiny_run_overrides, "student=cnn", "student.soft_targets=live"], tmp_path))
