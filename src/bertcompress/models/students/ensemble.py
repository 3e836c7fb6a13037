"""The heterogeneous ensemble of static students on one shared embedding (Lin et al. 2024)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bertcompress.models.students.registry import register_student
from bertcompress.models.students.static import (
    StaticEmbedding,
    StaticStudent,
    bilstm_student,
    cnn_lstm_student,
    cnn_student,
)


class EnsembleStudent(nn.Module):
    """Heterogeneous ensemble sharing one static embedding (Lin et al. 2024).

    Args:
        embedding: the shared table (frozen or tunable, see :class:`StaticEmbedding`).
        members: the member students, each built on ``embedding``.
        combine: ``mean`` (average logits) or ``learned`` (softmax-normalised learned weights).

    Output logits (B, C) = sum_i w_i * logits_i.
    """

    def __init__(self, embedding: StaticEmbedding, members: Sequence[StaticStudent], combine: str = "mean"):
        super().__init__()
        if combine not in {"mean", "learned"}:
            raise ValueError(f"student.model.combine={combine!r}: expected 'mean' or 'learned'")
        if any(m.embedding is not embedding for m in members):
            raise ValueError("every ensemble member must share the ensemble's embedding")
        self.embedding = embedding
        self.members = nn.ModuleList(members)
        self.combine = combine
        self.member_logit_weights = nn.Parameter(torch.zeros(len(members)), requires_grad=combine == "learned")

    def weights(self) -> torch.Tensor:
        return torch.softmax(self.member_logit_weights, dim=0)

    def member_logits(self, batch: dict) -> torch.Tensor:
        """(M, B, C): each member's logits, from one shared embedding lookup."""
        emb = self.embedding(batch["input_ids"])
        return torch.stack([m.logits(emb, batch) for m in self.members])

    def forward(self, batch: dict) -> torch.Tensor:
        return torch.einsum("m,mbc->bc", self.weights(), self.member_logits(batch))


@register_student("ensemble_student")
def ensemble_student(
    embedding: StaticEmbedding,
    num_labels: int,
    combine: str = "mean",
    hidden_size: int = 256,
    num_filters: int = 128,
    dropout: float = 0.3,
):
    """BiLSTM + Kim CNN + CNN-LSTM on one shared embedding."""
    members = [
        bilstm_student(embedding, num_labels, hidden_size, dropout),
        cnn_student(embedding, num_labels, num_filters, (3, 4, 5), dropout),
        cnn_lstm_student(embedding, num_labels, num_filters, hidden_size // 2, dropout),
    ]
    return EnsembleStudent(embedding, members, combine)
