"""Artifacts without pickle: torch-format modules rebuilt from module.json + model.safetensors give the
same logits as the module that was saved, and pickles are refused without being opened."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import compose

LABELS = ["anger", "disgust", "fear", "joy", "sadness", "surprise"]
STATIC = ["cnn", "cnn_bag", "bilstm", "cnn_lstm", "ensemble"]


def _static_final(name, tiny_bert_dir, texts):
    from bertcompress.compression.apply import FinalModel
    from bertcompress.models.student_builder import build_student

    cfg = compose([f"student={name}"]).student
    with torch.random.fork_rng():  # the same weights whichever tests ran before
        torch.manual_seed(0)
        bundle = build_student(cfg, tiny_bert_dir, LABELS, texts, max_length=32)
        with torch.no_grad():  # weights away from their init, so that a load that keeps the init would show
            for p in bundle.module.parameters():
                p.add_(torch.randn_like(p) * 0.05)
    return FinalModel(name, bundle.module.eval(), bundle.encoder, LABELS, None)


def _save_and_reload(final, tmp_path, quantization: dict | None):
    from bertcompress.artifacts import load_artifact
    from bertcompress.compression.apply import compress_and_save

    cfg = OmegaConf.create({"name": "q", "pruning": None, "quantization": quantization})
    compress_and_save(final, cfg, tmp_path / "art", calibration_loader=None)
    return load_artifact(tmp_path / "art")


QUANT = {
    "fp32": None,
    "torch_ao": {"mode": "dynamic", "backend": "torch_ao", "per_channel": True, "quantize_embeddings": True},
    "torch_ao_per_tensor": {"mode": "dynamic", "backend": "torch_ao", "per_channel": False},
    "fp16": {"mode": "fp16", "backend": "torch_ao"},
}


@pytest.mark.parametrize("name", STATIC)
@pytest.mark.parametrize(
    "quant",
    # the per-tensor and fp16 layouts take the same code paths as the two kept in the default suite
    [
        "fp32",
        "torch_ao",
        pytest.param("torch_ao_per_tensor", marks=pytest.mark.slow),
        pytest.param("fp16", marks=pytest.mark.slow),
    ],
)
def test_static_students_reload_from_safetensors_with_identical_logits(
    name, quant, tmp_path, tiny_bert_dir, ubmec_texts
):
    import copy

    from bertcompress.compression.quant_torch import quantize_torch

    texts = ubmec_texts[:24]
    final = _static_final(name, tiny_bert_dir, texts)
    q = QUANT[quant]
    if q is not None:
        q = {"_target_": "bertcompress.compression.steps.PostTrainingQuantization", **q, "smoothquant_alpha": None}
    predictor = _save_and_reload(final, tmp_path, q)
    art = tmp_path / "art"
    assert sorted(p.name for p in art.iterdir() if p.suffix in {".pt", ".pkl", ".safetensors"}) == ["model.safetensors"]
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["format"] == "torch" and manifest["format_version"] == 2
    expected = final.module
    if q is not None:
        expected, _ = quantize_torch(
            copy.deepcopy(final.module),
            q["mode"],
            q["backend"],
            bool(q.get("quantize_embeddings")),
            bool(q.get("per_channel")),
        )
    with torch.inference_mode():
        for batch in predictor.batches(texts, batch_size=8):
            assert torch.equal(torch.from_numpy(predictor.logits(batch)), expected(batch).float())


def test_torchao_and_smoothquant_hf_models_reload_exactly(tmp_path, tiny_bert_dir, ubmec_texts):
    from tests.test_compression import _final_model, load_artifact_batches

    final = _final_model(tiny_bert_dir)
    texts = ubmec_texts[:16]
    batches = [{k: b[k] for k in ("input_ids", "attention_mask")} for b in load_artifact_batches(final, texts)]
    for i, (backend, alpha) in enumerate((("torchao", None), ("torch_ao", 0.75))):
        from bertcompress.artifacts import load_artifact
        from bertcompress.compression.apply import compress_and_save
        from bertcompress.compression.quantization import Quantizer

        settings = {"mode": "dynamic", "backend": backend, "per_channel": True, "smoothquant_alpha": alpha}
        cfg = OmegaConf.create(
            {
                "name": "q",
                "pruning": None,
                "quantization": {
                    "_target_": "bertcompress.compression.steps.PostTrainingQuantization",
                    **settings,
                    "calibration_batches": 2,
                },
            }
        )
        compress_and_save(final, cfg, tmp_path / f"a{i}", calibration_loader=batches)
        predictor = load_artifact(tmp_path / f"a{i}")
        import copy

        expected = Quantizer(**settings, calibration_batches=2).apply(copy.deepcopy(final.module), batches, None).module
        with torch.inference_mode():
            for b in predictor.batches(texts, 8):
                assert torch.allclose(torch.from_numpy(predictor.logits(b)), expected(b).float(), atol=1e-6)


class _WritesAFile:
    """A pickle payload: unpickling it calls open(<path>, 'w') (any code could run instead)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("layout", ["v1_model_pt", "v2_safetensors", "v1_tfidf_pkl"])
def test_a_pickle_payload_is_refused_and_never_run(layout, tmp_path, tiny_bert_dir, ubmec_texts):
    from bertcompress.artifacts import ArtifactError, load_artifact

    final = _static_final("cnn", tiny_bert_dir, ubmec_texts[:8])
    _save_and_reload(final, tmp_path, None)
    art, marker = tmp_path / "art", tmp_path / "pwned.txt"
    payload = pickle.dumps(_WritesAFile(marker))
    manifest = json.loads((art / "manifest.json").read_text())
    if layout == "v2_safetensors":  # the weight file the manifest names holds a pickle instead
        (art / "model.safetensors").write_bytes(payload)
    else:  # an artifact as version 1 wrote them: a pickled module (or scikit-learn pipeline)
        name = "model.pt" if layout == "v1_model_pt" else "model.pkl"
        (art / name).write_bytes(payload)
        manifest.pop("format_version")
        manifest.update(weights=name, format="torch" if layout == "v1_model_pt" else "sklearn")
        (art / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError) as err:
        load_artifact(art)
    message = str(err.value)
    assert str(art) in message and ("re-export" in message.lower())
    if layout != "v2_safetensors":
        assert "pickle" in message and name in message
    assert not marker.exists()
