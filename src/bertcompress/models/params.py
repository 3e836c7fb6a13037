"""Parameter counts: total, trainable, non-zero, and embedding vs the rest."""

from __future__ import annotations

from torch import nn


def count_parameters(model: nn.Module) -> dict:
    """Count parameters of ``model`` (shared tensors once).

    Returns:
        ``{"total", "trainable", "nonzero", "embedding", "non_embedding"}`` in params;
        ``embedding`` counts every ``nn.Embedding`` (word, position, token type).
    """
    seen, total, trainable, nonzero = set(), 0, 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
        nonzero += _nonzero(p)
    emb_seen, embedding = set(), 0
    for m in model.modules():
        if isinstance(m, nn.Embedding) and id(m.weight) not in emb_seen:
            emb_seen.add(id(m.weight))
            embedding += m.weight.numel()
    return {
        "total": total,
        "trainable": trainable,
        "nonzero": nonzero,
        "embedding": embedding,
        "non_embedding": total - embedding,
    }


def _nonzero(p) -> int:
    """Non-zero count; quantized tensor subclasses (torchao) are dequantized first."""
    try:
        return int((p != 0).sum())
    except NotImplementedError:
        dequantize = getattr(p, "dequantize", None)
        return int((dequantize() != 0).sum()) if dequantize is not None else p.numel()
