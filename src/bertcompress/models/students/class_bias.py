"""Per-class logit offsets folded into a student's logit layer (no inference cost)."""

from __future__ import annotations

import torch
from torch import nn

from bertcompress.models.students.ensemble import EnsembleStudent
from bertcompress.models.students.static import StaticStudent


def fold_class_bias(model: nn.Module, class_bias) -> list[str]:
    """Add per-class offsets ``class_bias`` (C,) to the bias of the Linear layer(s) that produce the logits,
    so that ``model(batch)`` returns ``logits + class_bias`` at no inference cost (and through pruning and
    int8 quantization, which keep biases in fp32). The offsets come from
    :func:`bertcompress.distill.multi_teacher.tune_class_bias` (Lipton et al. 2014; Menon et al. 2021).

    The logit layers: each member's classifier for an :class:`EnsembleStudent` (its member weights sum
    to 1, so the ensemble's logits shift by exactly ``class_bias``), the ``classifier`` of a
    :class:`StaticStudent`, else the last ``nn.Linear`` with C outputs (an HF model's head).

    Returns:
        the qualified names of the Linear layers changed.

    Raises:
        ValueError: no Linear layer with C outputs and a bias.
    """
    b = torch.as_tensor(list(class_bias), dtype=torch.float32)
    if isinstance(model, EnsembleStudent):
        names = [f"members.{i}.classifier" for i in range(len(model.members))]
    elif isinstance(model, StaticStudent):
        names = ["classifier"]
    else:
        heads = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and m.out_features == len(b)]
        names = heads[-1:]
    layers = [model.get_submodule(n) for n in names]
    if not layers or any(lin.bias is None or lin.out_features != len(b) for lin in layers):
        raise ValueError(
            f"{type(model).__name__} has no logit Linear layer with {len(b)} outputs and a bias to fold "
            "student.class_bias into; set student.class_bias=null"
        )
    with torch.no_grad():
        for lin in layers:
            lin.bias.add_(b.to(lin.bias.dtype))
    return names
