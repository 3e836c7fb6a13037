"""Torch modules on disk without pickle: ``model.safetensors`` (tensors only) plus ``module.json`` (how to
rebuild the module, and how each stored tensor decodes).

A module is rebuilt from its ``spec`` (what built the float model) and ``quantization`` (what PTQ did to
it), then its state dict is loaded: nothing in the artifact is executed. Supported:

- float modules (fp32, fp16/bf16 casts, pruned ones), shared tensors stored once;
- torch.ao dynamic int8 (``quantize_dynamic``): quantized tensors are stored as their int8/uint8 values
  plus scales and zero points (per tensor or per channel, https://pytorch.org/docs/stable/quantization.html),
  dynamic LSTMs through their ``_weight_bias()`` / ``set_weight_bias()``;
- torchao int8 tensor subclasses through torchao's safetensors support
  (``torchao.prototype.safetensors``);
- SmoothQuant's :class:`~bertcompress.compression.smoothquant.SmoothedLinear` wrappers, found from the
  ``<linear>.inv_scale`` keys.

Files are read with ``safetensors.torch.load_file`` and ``json``: a pickle payload is never unpickled.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

MODULE_JSON = "module.json"
WEIGHTS = "model.safetensors"
LAYOUT = "bertcompress-torch-safetensors/1"
_LSTM = "__lstm__"


def _put(tensors: dict, name: str, t: torch.Tensor, seen: dict) -> dict:
    """Store ``t`` under ``name`` (an int repr + qparams for a quantized tensor); returns its JSON entry."""
    if t.is_quantized:
        entry = {"kind": "qtensor", "dtype": str(t.dtype).removeprefix("torch."), "qscheme": str(t.qscheme())}
        tensors[f"{name}::int_repr"] = t.int_repr().contiguous()
        if t.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            entry.update(scale=float(t.q_scale()), zero_point=int(t.q_zero_point()))
        else:
            tensors[f"{name}::scales"] = t.q_per_channel_scales().contiguous()
            tensors[f"{name}::zero_points"] = t.q_per_channel_zero_points().contiguous()
            entry["axis"] = int(t.q_per_channel_axis())
        return entry
    key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
    if t.numel() and key in seen:
        return {"kind": "alias", "of": seen[key]}
    seen[key] = name
    tensors[name] = t.detach().contiguous()
    return {"kind": "tensor"}


_QDTYPES = {"qint8": torch.qint8, "quint8": torch.quint8, "qint32": torch.qint32}


def _get(tensors: dict, name: str, entry: dict, entries: dict) -> torch.Tensor:
    kind = entry["kind"]
    if kind == "alias":
        return _get(tensors, entry["of"], entries.get(entry["of"], {"kind": "tensor"}), entries)
    if kind == "tensor":
        return tensors[name]
    rep = tensors[f"{name}::int_repr"]
    if "axis" in entry:
        return torch._make_per_channel_quantized_tensor(
            rep, tensors[f"{name}::scales"], tensors[f"{name}::zero_points"], entry["axis"]
        )
    return torch._make_per_tensor_quantized_tensor(rep, entry["scale"], entry["zero_point"])


def encode_module(module: nn.Module) -> tuple[dict[str, torch.Tensor], dict]:
    """``module``'s state as (tensors for safetensors, JSON entries describing each state-dict key)."""
    state = module.state_dict()
    if any(_is_subclass(v) for v in state.values()):
        from torchao.prototype.safetensors.safetensors_support import flatten_tensor_state_dict

        tensors, meta = flatten_tensor_state_dict(state)
        return dict(tensors), {"codec": "torchao", "metadata": meta}
    tensors, entries, seen = {}, {}, {}
    for key, value in state.items():
        if isinstance(value, torch.dtype):
            entries[key] = {"kind": "dtype", "value": str(value).removeprefix("torch.")}
        elif isinstance(value, tuple):
            entries[key] = {
                "kind": "tuple",
                "items": [_item(tensors, f"{key}.{i}", v, seen) for i, v in enumerate(value)],
            }
        elif isinstance(value, torch.Tensor):
            entries[key] = _put(tensors, key, value, seen)
        else:  # the packed params of a dynamic LSTM (a ScriptObject): stored per LSTM below
            entries[key] = {"kind": "packed"}
    from torch.ao.nn.quantized.dynamic import LSTM as QLSTM

    for prefix, m in module.named_modules():
        if isinstance(m, QLSTM):
            wb = m._weight_bias()
            names = {**wb["weight"], **wb["bias"]}
            entries[f"{prefix}.{_LSTM}"] = {
                "kind": "lstm",
                "params": {k: _put(tensors, f"{prefix}.{_LSTM}.{k}", v, seen) for k, v in names.items()},
            }
    return tensors, {"codec": "state_dict", "entries": entries}


def _item(tensors, name, value, seen):
    if value is None:
        return {"kind": "none"}
    return {**_put(tensors, name, value, seen), "name": name}


def _is_subclass(value) -> bool:
    return isinstance(value, torch.Tensor) and type(value) not in (torch.Tensor, nn.Parameter)


def decode_into(module: nn.Module, tensors: dict[str, torch.Tensor], codec: dict) -> nn.Module:
    """Load the stored state into ``module`` (rebuilt to the same structure); returns it.

    Raises:
        KeyError / RuntimeError: a state that does not fit the rebuilt module (missing or extra keys, shapes).
    """
    if codec["codec"] == "torchao":
        from torchao.prototype.safetensors.safetensors_support import unflatten_tensor_state_dict

        state, leftover = unflatten_tensor_state_dict(tensors, codec["metadata"]), None
        if isinstance(state, tuple):
            state, leftover = state
        if leftover:
            raise KeyError(f"tensors not in the torchao state: {sorted(leftover)[:5]}")
        module.load_state_dict(state, assign=True)
        return module
    entries = codec["entries"]
    own = module.state_dict()
    state = OrderedDict()
    state._metadata = getattr(own, "_metadata", {})  # per-module versions: quantized Linears read theirs
    for key, entry in entries.items():
        kind = entry["kind"]
        if kind == "lstm":
            continue
        if kind == "dtype":
            state[key] = getattr(torch, entry["value"])
        elif kind == "packed":
            state[key] = own[key]
        elif kind == "tuple":
            state[key] = tuple(
                None if it["kind"] == "none" else _get(tensors, it["name"], it, entries) for it in entry["items"]
            )
        else:
            state[key] = _get(tensors, key, entry, entries)
    module.load_state_dict(state, strict=True)
    for key, entry in entries.items():
        if entry["kind"] == "lstm":
            prefix = key.removesuffix(f".{_LSTM}")
            params = {k: _get(tensors, f"{key}.{k}", e, entries) for k, e in entry["params"].items()}
            module.get_submodule(prefix).set_weight_bias(params)
    return module


def wrap_smoothed(module: nn.Module, keys) -> nn.Module:
    """Wrap each Linear ``X`` for which ``X.inv_scale`` is a stored key in a SmoothedLinear (in place)."""
    from bertcompress.compression.smoothquant import SmoothedLinear

    for key in keys:
        if not key.endswith(".inv_scale"):
            continue
        name = key.removesuffix(".inv_scale")
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        linear = getattr(parent, attr, None)
        if isinstance(linear, nn.Linear):
            setattr(parent, attr, SmoothedLinear(linear, torch.ones(linear.in_features)))
    return module


def write_module(directory: Path, module: nn.Module, spec: dict, quantization: dict | None) -> None:
    """Write ``model.safetensors`` and ``module.json`` for ``module`` into ``directory``.

    ``spec``: how the float module is built (:func:`bertcompress.artifacts.torch_module.build_float`);
    ``quantization``: the PTQ settings applied after it (``mode``, ``backend``, ``per_channel``,
    ``quantize_embeddings``) or None.
    """
    from safetensors.torch import save_file

    tensors, codec = encode_module(module)
    save_file(tensors, str(directory / WEIGHTS))
    doc = {"layout": LAYOUT, "spec": spec, "quantization": quantization, "state": codec}
    (directory / MODULE_JSON).write_text(json.dumps(doc, indent=1), encoding="utf-8")


def read_module_doc(directory: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """``module.json`` and the tensors of ``model.safetensors`` (no pickle)."""
    from safetensors.torch import load_file

    doc = json.loads((directory / MODULE_JSON).read_text(encoding="utf-8"))
    if doc.get("layout") != LAYOUT:
        raise ValueError(f"{directory / MODULE_JSON}: layout {doc.get('layout')!r}, expected {LAYOUT!r}")
    return doc, load_file(str(directory / WEIGHTS))
