"""What an artifact records to rebuild a static student without pickle (read by
:mod:`bertcompress.artifacts.torch_module`)."""

from __future__ import annotations

from torch import nn

from bertcompress.models.students.registry import get_student


def static_spec(target: str, kwargs: dict, embedding: nn.Module, num_labels: int, per_token: bool) -> dict:
    """The spec :func:`build_float` rebuilds a static student from: the builder's name, its keyword
    arguments, the label count and the embedding table's sizes ((V, D), padding id, dropout).

    Raises:
        ValueError: a builder that is not a registered static student
            (:mod:`bertcompress.models.students.registry`).
    """
    name = get_student(target).name
    table = embedding.embedding
    return {
        "builder": "static",
        "function": name,
        "kwargs": kwargs,
        "num_labels": int(num_labels),
        "per_token": bool(per_token),
        "embedding": {
            "num_embeddings": int(table.num_embeddings),
            "dim": int(table.embedding_dim),
            "padding_idx": table.padding_idx,
            "dropout": float(embedding.dropout.p),
        },
    }
