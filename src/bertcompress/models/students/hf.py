"""Transformer students: a hub model behind the batch-dict interface, and the teacher truncated to
k evenly spaced layers (DistilBERT's initialisation, Sanh et al. 2019, arXiv:1910.01108)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class HFStudent(nn.Module):
    """Wrap an HF ``*ForSequenceClassification`` model: batch -> logits (B, C) (``*ForTokenClassification``:
    (B, T, C))."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> torch.Tensor:
        return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def truncation_layers(num_layers: int, keep: int) -> list[int]:
    """Evenly spaced layer indices, starting at 0: 12 -> 6 gives 0, 2, 4, 6, 8, 10 (DistilBERT's choice).

    Raises:
        ValueError: unless ``1 <= keep <= num_layers``.
    """
    if not 1 <= keep <= num_layers:
        raise ValueError(f"student.num_layers={keep}: must lie in [1, {num_layers}] (the teacher's layer count)")
    return [round(i * num_layers / keep) for i in range(keep)]


def layer_list(model: nn.Module) -> tuple[nn.Module, str]:
    """The module holding the transformer blocks and the attribute name (BERT/ELECTRA/XLM-R or DistilBERT)."""
    base = model.base_model
    if hasattr(base, "encoder") and hasattr(base.encoder, "layer"):
        return base.encoder, "layer"
    if hasattr(base, "transformer") and hasattr(base.transformer, "layer"):
        return base.transformer, "layer"
    raise ValueError(f"Cannot find the transformer layers of {type(model).__name__} for truncation")


def truncate_layers(model: nn.Module, layers: Sequence[int]) -> nn.Module:
    """Keep only ``layers`` (indices into the encoder blocks) of an HF model, in place; returns it."""
    holder, attr = layer_list(model)
    blocks = getattr(holder, attr)
    bad = [i for i in layers if not 0 <= i < len(blocks)]
    if bad:
        raise ValueError(f"student.layers {bad} out of range: the teacher has {len(blocks)} layers")
    setattr(holder, attr, nn.ModuleList([blocks[i] for i in layers]))
    for name in ("num_hidden_layers", "n_layers"):
        if hasattr(model.config, name):
            setattr(model.config, name, len(layers))
    if hasattr(model.config, "layer_types") and model.config.layer_types:
        model.config.layer_types = [model.config.layer_types[i] for i in layers]
    return model
