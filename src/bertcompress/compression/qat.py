"""Quantization-aware training (QAT) with distillation from the model's own fp32 logits, exported to an int8
ONNX graph in QDQ form that ONNX Runtime runs with int8 kernels.

Every ``nn.Linear`` is replaced by :class:`FakeQuantLinear`: int8 weights per output channel (symmetric) and
uint8 inputs per tensor (asymmetric, the range an exponential moving average of batch min/max), simulated in
fp32 with straight-through gradients (``torch.fake_quantize_per_*_affine``; Jacob et al. 2018,
arXiv:1712.05877; Krishnamoorthi 2018, arXiv:1806.08342). The model is calibrated on training batches, then
fine-tuned with KD from a frozen fp32 copy of itself (logits, Hinton et al. 2015), as INC, NNCF and
ModelOpt pair QAT with distillation. ``torch.onnx.export(dynamo=False)`` writes each fake-quant op as a
QuantizeLinear/DequantizeLinear pair; :func:`fold_weights` then stores the weights as int8 initializers,
so the file holds int8 weights and no pickle. The embedding tables (the ``Gather`` ops, most of the bytes of a
multilingual encoder) are then quantized weight-only to int8 by ONNX Runtime's dynamic quantizer, as the PTQ
presets quantize them (``quantize_embeddings``).
"""

from __future__ import annotations

import copy
import itertools
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from bertcompress.compression.steps import CompressionContext, run_finetune
from bertcompress.distill.losses import SoftTargetLoss

log = logging.getLogger(__name__)


class FakeQuantLinear(nn.Module):
    """A Linear whose input (B, ..., in) and weight (out, in) pass through int8 fake quantization.

    Args:
        linear: the layer to wrap (its parameters are shared, not copied).
        momentum: the EMA weight of each new batch's input range while training.

    ``freeze()`` fixes the scales (and the weight's transposed copy) for export: after it, ``forward`` is
    what the QDQ graph computes.
    """

    def __init__(self, linear: nn.Linear, momentum: float = 0.01):
        super().__init__()
        self.weight, self.bias, self.momentum = linear.weight, linear.bias, float(momentum)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("act_range", torch.tensor([float("inf"), float("-inf")]))
        self.frozen = False

    def observe(self, x: torch.Tensor) -> None:
        lo, hi = x.detach().min().clamp(max=0.0), x.detach().max().clamp(min=0.0)  # 0 exactly representable
        if not torch.isfinite(self.act_range).all():
            self.act_range.copy_(torch.stack([lo, hi]))
        elif self.training:
            self.act_range.lerp_(torch.stack([lo, hi]), self.momentum)
        else:  # calibration: min/max over the batches seen
            self.act_range.copy_(
                torch.stack([torch.minimum(self.act_range[0], lo), torch.maximum(self.act_range[1], hi)])
            )

    def act_qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = self.act_range[0], self.act_range[1]
        scale = ((hi - lo) / 255.0).clamp_min(1e-8)
        zero = torch.clamp(torch.round(-lo / scale), 0, 255).to(torch.int32)
        return scale, zero

    def weight_scale(self) -> torch.Tensor:
        return (self.weight.detach().abs().amax(dim=1) / 127.0).clamp_min(1e-8)

    def freeze(self) -> None:
        """Fix the input scale and the weight scale as buffers (and a transposed weight): the exported graph."""
        scale, zero = self.act_qparams()
        self.register_buffer("x_scale", scale.detach().clone())
        self.register_buffer("x_zero", zero.to(torch.uint8))
        self.register_buffer("w_scale", self.weight_scale())
        self.register_buffer("w_zero", torch.zeros(self.out_features, dtype=torch.int8))
        self.register_buffer("w_t", self.weight.detach().t().contiguous())
        self.frozen = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.frozen:
            xq = torch.fake_quantize_per_tensor_affine(x, self.x_scale, self.x_zero.to(torch.int32), 0, 255)
            wq = torch.fake_quantize_per_channel_affine(
                self.w_t, self.w_scale, self.w_zero.to(torch.int32), 1, -128, 127
            )
            out = torch.matmul(xq, wq)
            return out + self.bias if self.bias is not None else out
        self.observe(x)
        scale, zero = self.act_qparams()
        xq = torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)
        ws = self.weight_scale()
        wq = torch.fake_quantize_per_channel_affine(
            self.weight, ws, torch.zeros_like(ws, dtype=torch.int32), 0, -128, 127
        )
        return F.linear(xq, wq, self.bias)


def prepare_qat(model: nn.Module, momentum: float = 0.01) -> list[str]:
    """Replace every ``nn.Linear`` of ``model`` by a :class:`FakeQuantLinear` in place; returns their names."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    for name in names:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, FakeQuantLinear(getattr(parent, attr), momentum))
    return names


def fold_weights(path: str | Path) -> dict:
    """Replace each QuantizeLinear whose inputs are all constants (the weights) by its int8 result as an
    initializer, and drop the fp32 weights no node reads any more. Returns the counts."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:  # constants: Constant nodes, and Identity of a constant (the exporter's shared values)
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        elif node.op_type == "Identity" and node.input[0] in consts:
            consts[node.output[0]] = consts[node.input[0]]
    folded, keep = 0, []
    for node in graph.node:
        inputs = [i for i in node.input if i]
        if node.op_type == "QuantizeLinear" and len(inputs) == 3 and all(i in consts for i in inputs):
            w, scale, zero = (consts[i] for i in inputs)
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            if scale.ndim == 1 and w.ndim > 1:
                shape = [1] * w.ndim
                shape[axis] = -1
                scale, zero = scale.reshape(shape), zero.reshape(shape)
            info = np.iinfo(zero.dtype)
            q = np.clip(np.round(w / scale) + zero.astype(np.int32), info.min, info.max).astype(zero.dtype)
            graph.initializer.append(numpy_helper.from_array(q, node.output[0]))
            folded += 1
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    dropped = [i for i in graph.initializer if i.name not in used]
    for init in dropped:
        graph.initializer.remove(init)
    onnx.save(model, str(path))
    return {"weights_folded_to_int8": folded, "fp32_initializers_dropped": len(dropped)}


class QuantizationAwareTraining:
    """The ``compression=qat`` step (and the fallback of ``compression=auto``): fake-quant fine-tuning of the
    final model, distilled from its own fp32 logits, exported to an int8 QDQ ONNX graph.

    Args:
        finetune_epochs: QAT epochs (>= 1).
        optimizer: a partial taking the parameters (``_partial_: true`` config), or None (the trainer's default).
        calibration_batches: training batches that set the input ranges before the fine-tune.
        momentum: EMA weight of each batch's input range during the fine-tune.
        temperature / alpha: the KD loss against the fp32 model (:class:`SoftTargetLoss`, mode kl).
        quantize_embeddings: also store the embedding tables in int8 (ONNX Runtime weight-only ``Gather``
            quantization after the export); False keeps them in fp32.

    Raises:
        ValueError: ``finetune_epochs < 1``, ``calibration_batches < 1``, or a bad temperature / alpha.
    """

    def __init__(
        self,
        finetune_epochs: int = 1,
        optimizer=None,
        calibration_batches: int = 8,
        momentum: float = 0.01,
        temperature: float = 2.0,
        alpha: float = 0.9,
        quantize_embeddings: bool = True,
    ):
        if int(finetune_epochs) < 1 or int(calibration_batches) < 1:
            raise ValueError(
                f"compression.quantization: QAT needs finetune_epochs >= 1 and calibration_batches >= 1 "
                f"(got {finetune_epochs}, {calibration_batches})"
            )
        self.loss = SoftTargetLoss("kl", float(temperature), float(alpha))  # checks T and alpha
        self.finetune_epochs, self.optimizer = int(finetune_epochs), optimizer
        self.calibration_batches, self.momentum = int(calibration_batches), float(momentum)
        self.quantize_embeddings = bool(quantize_embeddings)

    fits = True

    def apply(self, model: nn.Module, context: CompressionContext) -> nn.Module:
        from bertcompress.compression.quant_onnx import export_onnx, onnx_graph_report, quantize_onnx

        if context.calibration_loader is None or context.workdir is None:
            raise ValueError("QAT needs training batches and a workdir (calibration_loader, workdir)")
        teacher = copy.deepcopy(model).eval().requires_grad_(False)  # the fp32 model it distils from
        names = prepare_qat(model, self.momentum)
        model.eval()
        with torch.no_grad():  # input ranges from training batches before the fine-tune
            for batch in itertools.islice(context.calibration_loader, self.calibration_batches):
                model(batch)
        run_finetune(context, model, [], "QAT", self, teacher=teacher, loss=self.loss)
        for m in model.modules():
            if isinstance(m, FakeQuantLinear):
                m.freeze()
        example = next(iter(context.calibration_loader))
        path = export_onnx(model, Path(context.workdir) / "qat_int8.onnx", example)
        folded = fold_weights(path)
        feeds = {k: example[k] for k in ("input_ids", "attention_mask")}
        qdq = _run_onnx(path, feeds)
        with torch.no_grad():
            agreement = _compare(qdq, model(feeds).float().numpy())  # the graph against its fake-quant model
        embeddings = {}
        if self.quantize_embeddings:  # the tables in int8 weight-only, against the QDQ graph
            out = path.with_name(path.stem + "_emb.onnx")
            quantize_onnx(path, out, mode="dynamic", op_types=["Gather"])
            path, embeddings = out, {"embeddings_int8": _compare(_run_onnx(out, feeds), qdq)}
        context.report["quantization"] = {
            "method": "qat",
            "backend": "onnxruntime",
            "format": "QDQ",
            "layers": len(names),
            "finetune_epochs": self.finetune_epochs,
            "kd": {"temperature": self.loss.temperature, "alpha": self.loss.alpha, "teacher": "own fp32 logits"},
            "onnx_vs_fake_quant": agreement,
            **embeddings,
            **folded,
            **onnx_graph_report(path),
        }
        context.artifact.update(format="onnx", onnx_file=path)
        return model


def _run_onnx(path: Path, feeds: dict) -> np.ndarray:
    """The graph's logits on ``feeds`` (tensors) with ONNX Runtime."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {k: v.numpy() for k, v in feeds.items()})[0]


def _compare(got: np.ndarray, ref: np.ndarray) -> dict:
    """Max |Δ logit| and argmax agreement of ``got`` against ``ref`` (both (B, C) or (B, T, C))."""
    return {
        "max_abs_logit_diff": float(np.abs(got - ref).max()),
        "argmax_agreement": float((got.argmax(-1) == ref.argmax(-1)).mean()),
    }
