"""SmoothQuant before int8 PTQ: exact in fp32, less int8 error on outlier activations, saved and reloaded."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from bertcompress.compression.quant_config import check_quant_config
from bertcompress.compression.quantization import Quantizer
from bertcompress.compression.smoothquant import SmoothedLinear, smooth_linears
from tests.test_compression import _final_model, load_artifact_batches


class _TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(16, 64)
        self.out = nn.Linear(64, 4)

    def forward(self, batch: dict) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(batch["x"])))


def _outlier_batches(seed: int = 0) -> list[dict]:
    """Activations with two channels 50x larger than the rest (the outliers of transformer activations)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(128, 16, generator=g)
    x[:, [3, 11]] *= 50.0
    return [{"x": x[i : i + 32]} for i in range(0, 128, 32)]


def test_smoothing_keeps_the_fp32_function_and_wraps_every_linear(tiny_bert_dir, ubmec_texts):
    final = _final_model(tiny_bert_dir)
    batches = [dict(b) for b in load_artifact_batches(final, ubmec_texts[:24])]
    model = copy.deepcopy(final.module).eval()
    n_linear = sum(type(m) is nn.Linear for m in model.modules())
    report = smooth_linears(model, iter(batches), alpha=0.75, max_batches=2)
    assert report["layers"] == n_linear and report["calibration_batches"] == 2
    assert sum(isinstance(m, SmoothedLinear) for m in model.modules()) == n_linear
    assert report["scale_min"] < report["scale_max"]  # a real per-channel scale, not a constant
    with torch.no_grad():
        for b in batches:
            assert torch.allclose(model(b), final.module(b), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_smoothing_reduces_dynamic_int8_error_on_outlier_channels(seed):
    torch.manual_seed(seed)
    model = _TwoLayer().eval()
    batches = _outlier_batches(seed)
    with torch.no_grad():
        ref = torch.cat([model(b) for b in batches])

    def int8_error(alpha):
        cb = Quantizer("dynamic", "torch_ao", per_channel=False, smoothquant_alpha=alpha)
        q = cb.apply(copy.deepcopy(model), batches)
        with torch.no_grad():
            return (torch.cat([q.module(b) for b in batches]) - ref).abs().mean().item(), q.report

    plain, plain_report = int8_error(None)
    smoothed, report = int8_error(0.75)
    assert plain_report["smoothquant"] is None and report["smoothquant"]["layers"] == 2
    assert report["quantized_modules"]  # the Linear layers inside the wrappers were quantized
    assert smoothed < 0.8 * plain, (smoothed, plain)


def test_per_channel_torch_ao_weights_have_one_scale_per_output_row():
    model = _TwoLayer().eval()
    q = Quantizer("dynamic", "torch_ao", per_channel=True).apply(model)
    w = q.module.hidden.weight()
    assert w.qscheme() == torch.per_channel_affine and w.q_per_channel_scales().shape == (64,)
    assert q.report["per_channel"] is True


@pytest.mark.parametrize("backend", ["torch_ao", "torchao", "onnxruntime"])
def test_smoothed_int8_artifact_round_trips_through_disk(backend, tmp_path, tiny_bert_dir, ubmec_texts):
    from bertcompress.artifacts import load_artifact
    from bertcompress.compression.apply import compress_and_save

    final = _final_model(tiny_bert_dir)
    texts = ubmec_texts[:40]
    batches = [dict(b) for b in load_artifact_batches(final, texts)]
    cfg = OmegaConf.create(
        {
            "name": "quant",
            "pruning": None,
            "quantization": {
                "_target_": "bertcompress.compression.steps.PostTrainingQuantization",
                "mode": "dynamic",
                "backend": backend,
                "quantize_embeddings": False,
                "per_channel": True,
                "calibration_batches": 3,
                "observer": "minmax",
                "smoothquant_alpha": 0.75,
            },
        }
    )
    report = compress_and_save(final, cfg, tmp_path / "art", calibration_loader=batches)
    assert report["quantization"]["smoothquant"]["calibration_batches"] == 3
    # the pickled SmoothedLinear (torch_ao), the smoothed meta skeleton (torchao) or the Mul nodes (ONNX)
    predictor = load_artifact(tmp_path / "art")
    with torch.no_grad():
        fp32 = torch.cat([final.module(b) for b in predictor.batches(texts)]).numpy()
    int8 = np.concatenate([predictor.logits(b) for b in predictor.batches(texts)])
    assert int8.shape == (40, 6) and np.abs(int8 - fp32).max() < 0.1
    assert not np.allclose(int8, fp32, atol=1e-7)  # it is the int8 model, not the fp32 one


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("dynamic", "torch_ao", 8, "minmax", 0.0), r"must lie in \(0, 1\]"),
        (("dynamic", "torch_ao", 8, "minmax", 1.5), r"must lie in \(0, 1\]"),
        (("fp16", "torch_ao", 8, "minmax", 0.5), "set smoothquant_alpha=null"),
        (("dynamic", "torch_ao", 0, "minmax", 0.5), "calibration_batches >= 1"),
    ],
)
def test_bad_smoothquant_config_is_rejected(args, match):
    with pytest.raises(ValueError, match=match):
        check_quant_config(*args)


def test_smoothquant_without_calibration_data_is_an_error():
    cb = Quantizer("dynamic", "torch_ao", smoothquant_alpha=0.5)
    with pytest.raises(ValueError, match="SmoothQuant needs calibration batches"):
        cb.apply(_TwoLayer())
    with pytest.raises(ValueError, match="gave none"):
        smooth_linears(_TwoLayer(), iter([]), 0.5)


def test_smoothquant_with_per_tensor_weights_warns(caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="bertcompress.compression.quantization"):
        Quantizer("dynamic", "torch_ao", per_channel=False, smoothquant_alpha=0.75)
    assert "per_channel=true" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bertcompress.compression.quantization"):
        Quantizer("dynamic", "torch_ao", per_channel=True, smoothquant_alpha=0.75)
    assert "per_channel" not in caplog.text
