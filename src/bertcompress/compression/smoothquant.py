"""SmoothQuant: move activation outliers into the weights before int8 PTQ.

Xiao et al. 2023, "SmoothQuant: Accurate and Efficient Post-Training Quantization for Large Language
Models" (ICML 2023, https://arxiv.org/abs/2211.10438). A Linear layer computes ``X W^T``; for a
per-input-channel scale ``s`` (C_in,), ``X W^T = (X / s)(W * s)^T`` exactly. With

    s_j = max|X_j| ** alpha / max|W_j| ** (1 - alpha)

the few activation channels with very large magnitudes (the outliers of transformer activations,
Bondarenko et al. 2021, https://arxiv.org/abs/2109.12948) are shrunk, the weights grow in the same
channels, and both quantize to int8 with less error. ``max|X_j|`` is calibrated on training batches.

Here the division by ``s`` is an explicit elementwise multiply (:class:`SmoothedLinear`) in front of
each Linear rather than folded into a preceding LayerNorm, so it applies to any Linear (the FFN output
projection has GELU, not a linear op, in front of it). In fp32 the smoothed model computes the same
function (up to rounding); only the int8 model that follows differs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

import torch
from torch import nn

SOURCE = "Xiao et al. 2023, SmoothQuant (https://arxiv.org/abs/2211.10438)"
_EPS = 1e-5


class SmoothedLinear(nn.Module):
    """``linear(x * inv_scale)``: a Linear whose weight columns were multiplied by ``1 / inv_scale``.

    Args:
        linear: the Linear (C_in -> C_out), weights already scaled.
        inv_scale: (C_in,) the per-input-channel factor ``1 / s``.

    The inner ``linear`` stays an ``nn.Linear`` child, so dynamic int8 PTQ (torch.ao, torchao) and the
    ONNX exporter treat it as any other Linear.
    """

    def __init__(self, linear: nn.Linear, inv_scale: torch.Tensor):
        super().__init__()
        self.linear = linear
        self.register_buffer("inv_scale", inv_scale.detach().clone().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., C_in) -> (..., C_out)
        return self.linear(x * self.inv_scale.to(x.dtype))


def check_alpha(alpha: float) -> None:
    """Raises ValueError unless the migration strength ``alpha`` lies in (0, 1]."""
    if not 0.0 < float(alpha) <= 1.0:
        raise ValueError(f"compression.quantization.smoothquant_alpha={alpha}: must lie in (0, 1] (or null: off)")


def activation_absmax(
    model: nn.Module,
    batches: Iterable,
    forward: Callable[[nn.Module, object], object],
    names: list[str],
) -> tuple[dict[str, torch.Tensor], int]:
    """Per-input-channel max |x| of the Linear layers ``names`` over ``batches``: (name -> (C_in,), the
    number of batches read).

    Padding positions take part (the int8 kernels see them too); ``forward(model, batch)`` runs a batch.
    """
    stats: dict[str, torch.Tensor] = {}
    hooks = []
    for name in names:

        def hook(_mod, inp, name=name):
            x = inp[0].detach().float()
            a = x.abs().reshape(-1, x.shape[-1]).amax(0)
            stats[name] = torch.maximum(stats[name], a) if name in stats else a

        hooks.append(model.get_submodule(name).register_forward_pre_hook(hook))
    n_batches = 0
    try:
        with torch.inference_mode():
            for batch in batches:
                forward(model, batch)
                n_batches += 1
    finally:
        for h in hooks:
            h.remove()
    return stats, n_batches


def smooth_linears(
    model: nn.Module,
    batches: Iterable,
    alpha: float,
    forward: Callable[[nn.Module, object], object] = lambda m, b: m(b),
    max_batches: int | None = None,
) -> dict:
    """Apply SmoothQuant to every ``nn.Linear`` of ``model`` in place (eval mode, before int8 PTQ).

    Args:
        batches: calibration batches; the first ``max_batches`` are read.
        alpha: migration strength in (0, 1]; 0.5 in the paper, larger moves more of the activation
            range into the weights.

    Returns:
        A report: layers smoothed, calibration batches read, the range of ``s``, and the source.

    Raises:
        ValueError: alpha outside (0, 1], no Linear layer, or no calibration batch.
    """
    check_alpha(alpha)
    names = [n for n, m in model.named_modules() if type(m) is nn.Linear]
    if not names:
        raise ValueError(f"SmoothQuant: {type(model).__name__} has no nn.Linear layer to smooth")
    model.eval()
    it = batches if max_batches is None else itertools.islice(batches, int(max_batches))
    stats, n_batches = activation_absmax(model, it, forward, names)
    if not n_batches:
        raise ValueError("SmoothQuant needs calibration batches: the calibration loader gave none")
    smin, smax = float("inf"), 0.0
    for name in names:
        if name not in stats:  # a Linear the forward pass never reached (e.g. an unused head)
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        linear: nn.Linear = getattr(parent, attr)
        w = linear.weight.detach().abs().amax(0).clamp(min=_EPS)  # (C_in,)
        s = (stats[name].clamp(min=_EPS) ** alpha / w ** (1.0 - alpha)).clamp(_EPS, 1.0 / _EPS)
        with torch.no_grad():
            linear.weight.mul_(s.to(linear.weight.dtype))
        setattr(parent, attr, SmoothedLinear(linear, 1.0 / s))
        smin, smax = min(smin, float(s.min())), max(smax, float(s.max()))
    return {
        "method": "smoothquant",
        "alpha": float(alpha),
        "layers": len(stats),  # the Linear layers the calibration reached
        "calibration_batches": n_batches,
        "scale_min": smin,
        "scale_max": smax,
        "source": SOURCE,
    }
