"""The static-student registry: what the builder, the artifact rebuild and the task checks read."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bertcompress.models.students import registry
from bertcompress.models.students.registry import get_student, register_student, registered


def test_the_shipped_students_are_registered_with_what_they_support():
    assert set(registered()) >= {"bilstm_student", "cnn_student", "cnn_lstm_student", "ensemble_student"}
    assert get_student("bertcompress.models.students.bilstm_student").supports_ner
    assert not get_student("cnn_student").supports_ner
    with pytest.raises(ValueError, match=r"student.model._target_='x.rnn_student': not a registered static student"):
        get_student("x.rnn_student")


def test_a_new_student_is_built_and_rebuilt_from_its_artifact_spec_through_the_registry(tmp_path, monkeypatch):
    from bertcompress.artifacts.torch_module import build_float
    from bertcompress.models.students.spec import static_spec
    from bertcompress.models.students.static import StaticEmbedding

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    class MeanPool(nn.Module):
        def __init__(self, embedding, num_labels):
            super().__init__()
            self.embedding, self.head = embedding, nn.Linear(embedding.embedding.embedding_dim, num_labels)

        def forward(self, batch):
            return self.head(self.embedding(batch["input_ids"]).mean(1))

    @register_student("mean_student")
    def mean_student(embedding, num_labels, per_token=False):
        return MeanPool(embedding, num_labels)

    embedding = StaticEmbedding(torch.randn(20, 8), dropout=0.0, padding_idx=0)
    spec = static_spec("my_project.students.mean_student", {}, embedding, 3, False)
    rebuilt = build_float(spec, tmp_path)
    assert isinstance(rebuilt, MeanPool) and rebuilt({"input_ids": torch.ones(2, 5, dtype=torch.long)}).shape == (2, 3)
    with pytest.raises(ValueError, match="module.json spec.function='os.system': not a registered static student"):
        build_float({**spec, "function": "os.system"}, tmp_path)
    with pytest.raises(ValueError, match="registered twice"):
        register_student("mean_student")(lambda embedding, num_labels: None)
