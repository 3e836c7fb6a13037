"""Structured pruning that really removes attention heads and FFN neurons, rebuilding smaller Linears.

transformers 5 dropped ``prune_heads``, so this is written here for the BERT-family layer layout
shared by BERT, ELECTRA and XLM-R (``attention.self.{query,key,value}``, ``attention.output.dense``,
``intermediate.dense``, ``output.dense``).

- Head importance: Michel, Levy & Neubig 2019, "Are Sixteen Heads Really Better than One?"
  (arXiv:1905.10650): ``I_h = E_x |dL/dxi_h|`` for a gate ``xi_h = 1`` on each head's output,
  normalised per layer.
- Neuron importance: weight magnitude, ``||W_in[i, :]||_2 * ||W_out[:, i]||_2``.

The pruned shapes are saved as a ``structure`` (kept heads and neurons per layer) so that an
artifact can be rebuilt with :func:`resize_to_structure` before its state dict is loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import torch
from torch import nn

log = logging.getLogger(__name__)


def _encoder(model: nn.Module) -> nn.Module:
    while not hasattr(model, "base_model") and isinstance(getattr(model, "model", None), nn.Module):
        model = model.model  # unwrap batch -> logits wrappers (HFStudent)
    return getattr(getattr(model, "base_model", model), "encoder", None)


def encoder_layers(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks of a BERT/ELECTRA/XLM-R model (or its ``*ForSequenceClassification``).

    Raises:
        ValueError: when the model does not have the BERT-family layer layout.
    """
    layers = getattr(_encoder(model), "layer", None)
    if layers is None or not all(hasattr(ly, "attention") and hasattr(ly.attention, "self") for ly in layers):
        raise ValueError(
            f"Structured pruning supports BERT-family encoders (BERT, ELECTRA, XLM-R); {type(model).__name__} "
            "has no encoder.layer[i].attention.self"
        )
    return list(layers)


def _slice_linear(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A new Linear keeping ``index`` along ``dim`` (0: output features, 1: input features)."""
    w = linear.weight.data.index_select(dim, index).clone()
    b = linear.bias.data.clone() if linear.bias is not None else None
    if dim == 0 and b is not None:
        b = b[index].clone()
    new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device=w.device, dtype=w.dtype)
    new.weight.data.copy_(w)
    if b is not None:
        new.bias.data.copy_(b)
    return new


def prune_layer(layer: nn.Module, keep_heads: list[int], keep_neurons: list[int]) -> None:
    """Keep only ``keep_heads`` (indices) of the layer's attention and ``keep_neurons`` of its FFN, in place."""
    att = layer.attention.self
    d = att.attention_head_size
    if not keep_heads or not keep_neurons:
        raise ValueError("keep at least one head and one FFN neuron per layer")
    idx = torch.cat([torch.arange(h * d, (h + 1) * d) for h in sorted(keep_heads)]).to(att.query.weight.device)
    for name in ("query", "key", "value"):
        setattr(att, name, _slice_linear(getattr(att, name), idx, 0))
    layer.attention.output.dense = _slice_linear(layer.attention.output.dense, idx, 1)
    att.num_attention_heads = len(keep_heads)
    att.all_head_size = len(keep_heads) * d
    nidx = torch.tensor(sorted(keep_neurons), device=idx.device)
    layer.intermediate.dense = _slice_linear(layer.intermediate.dense, nidx, 0)
    layer.output.dense = _slice_linear(layer.output.dense, nidx, 1)


def drop_layers(model: nn.Module, fraction: float, selection: str = "top") -> list[int]:
    """Remove ``round(L * fraction)`` whole transformer blocks in place, and set ``config.num_hidden_layers``.

    Args:
        selection: ``top`` drops the last blocks (the best of the strategies of Sajjad et al. 2023, "On the
            effect of dropping layers of pre-trained transformer models", arXiv:2004.03844); ``uniform`` keeps
            evenly spaced blocks (as DistilBERT's initialisation).

    Returns:
        The 0-based indices of the kept blocks, in order.

    Raises:
        ValueError: a fraction outside [0, 1), an unknown selection, or one that would keep no block.
    """
    if not 0.0 <= fraction < 1.0 or selection not in {"top", "uniform"}:
        raise ValueError(
            f"compression.pruning.layer_fraction={fraction} must lie in [0, 1) and layer_selection={selection!r} "
            "be top or uniform"
        )
    layers, encoder = encoder_layers(model), _encoder(model)
    n = len(layers)
    keep = n - round(n * fraction)
    if keep < 1:
        raise ValueError(f"compression.pruning.layer_fraction={fraction} keeps no layer of {n}")
    kept = (
        list(range(keep))
        if selection == "top"
        else sorted({round(i * (n - 1) / max(keep - 1, 1)) for i in range(keep)})
    )
    encoder.layer = nn.ModuleList(layers[i] for i in kept)
    config = getattr(model, "config", None) or getattr(getattr(model, "model", None), "config", None)
    if config is not None:
        config.num_hidden_layers = len(kept)
    return kept


def structure_of(model: nn.Module) -> dict:
    """Heads and FFN neurons per layer: ``{"heads": [...], "intermediate": [...]}``."""
    layers = encoder_layers(model)
    return {
        "heads": [ly.attention.self.num_attention_heads for ly in layers],
        "intermediate": [ly.intermediate.dense.out_features for ly in layers],
    }


def resize_to_structure(model: nn.Module, structure: dict) -> nn.Module:
    """Give a fresh model the shapes of a pruned one (the first n heads/neurons), before ``load_state_dict``."""
    for ly, h, n in zip(encoder_layers(model), structure["heads"], structure["intermediate"], strict=True):
        prune_layer(ly, list(range(h)), list(range(n)))
    return model


@torch.enable_grad()
def head_importance(
    model: nn.Module, batches: Iterable[dict], forward: Callable[[nn.Module, dict], torch.Tensor], max_batches: int = 8
) -> torch.Tensor:
    """Michel et al. 2019 head importance, shape (layers, heads), each row L2-normalised.

    Args:
        model: the model; ``forward(model, batch) -> logits (B, C)`` (or (B, T, C) per token); batches carry ``labels``.
    """
    layers = encoder_layers(model)
    gates = [torch.ones(ly.attention.self.num_attention_heads, requires_grad=True) for ly in layers]
    hooks = []
    for ly, gate in zip(layers, gates, strict=True):

        def hook(module, args, output, gate=gate):
            out = output[0] if isinstance(output, tuple) else output
            b, t, _ = out.shape
            gated = (out.view(b, t, gate.numel(), -1) * gate.to(out.dtype)[:, None]).view(b, t, -1)
            return (gated, *output[1:]) if isinstance(output, tuple) else gated

        hooks.append(ly.attention.self.register_forward_hook(hook))
    scores = torch.zeros(len(layers), gates[0].numel())
    was_training = model.training
    model.eval()
    try:
        for i, batch in enumerate(batches):
            if i >= max_batches:
                break
            logits = forward(model, batch)  # (B, C), or (B, T, C) for sequence labeling (-100: ignored tokens)
            loss = nn.functional.cross_entropy(logits.flatten(0, -2), batch["labels"].flatten(), ignore_index=-100)
            grads = torch.autograd.grad(loss, gates)
            scores += torch.stack([g.abs().detach() for g in grads])
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return scores / scores.norm(dim=1, keepdim=True).clamp_min(1e-12)


def neuron_importance(layer: nn.Module) -> torch.Tensor:
    """Weight-magnitude importance of each FFN neuron, shape (intermediate,)."""
    w_in, w_out = layer.intermediate.dense.weight, layer.output.dense.weight
    return w_in.norm(dim=1) * w_out.norm(dim=0)


def prune_structured(
    model: nn.Module, head_fraction: float, neuron_fraction: float, head_scores: torch.Tensor | None = None
) -> dict:
    """Remove the least important ``head_fraction`` of heads and ``neuron_fraction`` of FFN neurons per layer.

    Args:
        head_scores: (layers, heads) importance; None falls back to the L2 norm of each head's output weights.

    Returns:
        A report: fractions, parameter counts before/after (params), and the resulting ``structure``.

    Raises:
        ValueError: for fractions outside [0, 1).
    """
    for name, f in (("head_fraction", head_fraction), ("neuron_fraction", neuron_fraction)):
        if not 0.0 <= f < 1.0:
            raise ValueError(f"compression.structured.{name}={f}: must lie in [0, 1)")
    before = sum(p.numel() for p in model.parameters())
    layers = encoder_layers(model)
    for li, ly in enumerate(layers):
        n_heads = ly.attention.self.num_attention_heads
        if head_scores is not None:
            hs = head_scores[li, :n_heads]
        else:
            d = ly.attention.self.attention_head_size
            hs = ly.attention.output.dense.weight.detach().view(-1, n_heads, d).norm(dim=(0, 2))
        keep_h = max(1, round(n_heads * (1 - head_fraction)))
        ns = neuron_importance(ly).detach()
        keep_n = max(1, round(ns.numel() * (1 - neuron_fraction)))
        prune_layer(ly, hs.topk(keep_h).indices.tolist(), ns.topk(keep_n).indices.tolist())
    after = sum(p.numel() for p in model.parameters())
    report = {
        "method": "structured",
        "head_fraction": head_fraction,
        "neuron_fraction": neuron_fraction,
        "importance": "michel2019" if head_scores is not None else "weight_norm",
        "params_before": before,
        "params_after": after,
        "structure": structure_of(model),
    }
    log.info("Structured pruning: %d -> %d params", before, after)
    return report
