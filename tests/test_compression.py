"""Pruning, structured pruning, PTQ backends, artifacts, the benchmark and predict.py, on tiny models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bertcompress.compression.pruning import (
    PruningCallback,
    cubic_sparsity,
    make_permanent,
    prunable_weights,
    prune_unstructured,
    sparsity,
)
from bertcompress.compression.quant_config import QuantizationError, check_quant_config
from bertcompress.compression.structured import encoder_layers, prune_structured, resize_to_structure, structure_of
from bertcompress.pipeline import run
from tests.conftest import CONF_DIR, ROOT, compose, requires_ubmec

# compression=auto and qat run in tests/test_auto.py and tests/test_qat.py (a whole search; a QAT fit and export)
COMPRESSIONS = sorted(p.stem for p in (CONF_DIR / "compression").glob("*.yaml") if p.stem not in {"auto", "qat"})


def _tiny_classifier(kind: str = "bert"):
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        ElectraConfig,
        ElectraForSequenceClassification,
        XLMRobertaConfig,
        XLMRobertaForSequenceClassification,
    )

    common = dict(
        vocab_size=300,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=3,
    )
    if kind == "bert":
        return BertForSequenceClassification(BertConfig(**common)).eval()
    if kind == "electra":
        return ElectraForSequenceClassification(ElectraConfig(embedding_size=32, **common)).eval()
    return XLMRobertaForSequenceClassification(XLMRobertaConfig(pad_token_id=1, **common)).eval()


def _batch(n=4, t=9):
    torch.manual_seed(0)
    return {
        "input_ids": torch.randint(3, 300, (n, t)),
        "attention_mask": torch.ones(n, t, dtype=torch.long),
        "labels": torch.randint(0, 3, (n,)),
    }


@pytest.mark.parametrize("scope", ["local", "global"])
@pytest.mark.parametrize("amount", [0.3, 0.5])
def test_sparsity_after_pruning_equals_amount(scope, amount):
    model = _tiny_classifier()
    modules = prunable_weights(model)
    assert all(isinstance(m, nn.Linear) for _, m, _ in modules)  # a transformer: its Linear layers
    assert modules and not any("classifier" in n or "embeddings" in n for n, *_ in modules)
    prune_unstructured(modules, amount, scope)
    report = sparsity(modules)
    assert report["overall"] == pytest.approx(amount, abs=2e-3)
    if scope == "local":
        assert all(s == pytest.approx(amount, abs=0.02) for s in report["per_layer"].values())
    assert (model.classifier.weight != 0).all()


def test_callback_makes_masks_permanent_and_reports_per_layer():
    model = _tiny_classifier()
    report = PruningCallback(0.5).apply(model)
    assert not any(hasattr(m, "weight_mask") for m in model.modules())  # prune.remove ran
    assert report["overall"] == pytest.approx(0.5, abs=2e-3) and len(report["per_layer"]) == 2 * 6
    assert "weight_orig" not in "".join(model.state_dict())


def test_cubic_schedule():
    assert cubic_sparsity(0, 0, 100, 0.5) == 0.0
    assert cubic_sparsity(100, 0, 100, 0.5) == 0.5
    assert cubic_sparsity(50, 0, 100, 0.5) == pytest.approx(0.5 * (1 - 0.5**3))
    values = [cubic_sparsity(t, 0, 100, 0.5) for t in range(0, 101, 10)]
    assert values == sorted(values)


@pytest.mark.parametrize("kind", ["bert", "electra", "xlmr"])
def test_structured_pruning_shrinks_linears_and_still_runs(kind):
    model = _tiny_classifier(kind)
    batch = _batch()
    before = [ly.intermediate.dense.weight.shape for ly in encoder_layers(model)]
    report = prune_structured(model, 0.5, 0.5)
    for ly, shape in zip(encoder_layers(model), before, strict=True):
        assert ly.attention.self.query.weight.shape == (16, 32)  # 2 of 4 heads of size 8
        assert ly.attention.output.dense.weight.shape == (32, 16)
        assert ly.intermediate.dense.weight.shape == (shape[0] // 2, 32)
        assert ly.output.dense.weight.shape == (32, shape[0] // 2)
    assert report["params_after"] < report["params_before"]
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert out.shape == (4, 3)
    fresh = resize_to_structure(_tiny_classifier(kind), structure_of(model))
    fresh.load_state_dict(model.state_dict())
    again = fresh.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.allclose(out, again, atol=1e-6)


def test_michel_head_importance_is_per_layer_normalised():
    from bertcompress.compression.structured import head_importance

    model = _tiny_classifier()
    scores = head_importance(
        model, [_batch()], lambda m, b: m(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    )
    assert scores.shape == (2, 4) and torch.allclose(scores.norm(dim=1), torch.ones(2), atol=1e-5)


@pytest.mark.parametrize(
    ("args", "exc", "match"),
    [
        (("dynamic", "tensorrt"), ValueError, "backend='tensorrt'"),
        (("int4", "torch_ao"), ValueError, "mode='int4'"),
        (("static", "onnxruntime", 0), ValueError, "needs calibration data"),
        (("static", "torchao", 8), QuantizationError, "backend 'torchao' cannot do static"),
    ],
)
def test_bad_quantization_config_is_rejected(args, exc, match):
    with pytest.raises(exc, match=match):
        check_quant_config(*args)


@pytest.mark.parametrize("amount", [1.0, -0.1, 1.5])
def test_bad_pruning_amount_is_rejected(amount, tmp_path, tiny_run_overrides):
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\)"):
        run(
            compose(
                [*tiny_run_overrides, "compression=prune", f"compression.pruning.amount={amount}", "debug=fdr"],
                tmp_path,
            )
        )


def _final_model(tiny_bert_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bertcompress.compression.apply import FinalModel
    from bertcompress.data.encoding import TextEncoder
    from bertcompress.models.students import HFStudent

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=6).eval()
    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    labels = ["anger", "disgust", "fear", "joy", "sadness", "surprise"]
    return FinalModel("tiny", HFStudent(model), TextEncoder(tok, 32), labels, None, hf_model=model)


QUANT_CASES = [
    ("dynamic", "torch_ao"),
    ("dynamic", "torchao"),
    ("dynamic", "onnxruntime"),
    ("static", "onnxruntime"),
    ("fp16", "torch_ao"),
    ("bf16", "torch_ao"),
]


@pytest.mark.parametrize(("mode", "backend"), QUANT_CASES)
def test_each_backend_round_trips_through_disk(mode, backend, tmp_path, tiny_bert_dir, ubmec_texts):
    from omegaconf import OmegaConf

    from bertcompress.artifacts import load_artifact
    from bertcompress.compression.apply import compress_and_save

    final = _final_model(tiny_bert_dir)
    texts = ubmec_texts[:40]
    batches = [
        {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]}
        for b in load_artifact_batches(final, texts)
    ]
    cfg = OmegaConf.create(
        {
            "name": f"{mode}-{backend}",
            "pruning": None,
            "quantization": {
                "_target_": "bertcompress.compression.steps.PostTrainingQuantization",
                "mode": mode,
                "backend": backend,
                "quantize_embeddings": True,
                "calibration_batches": 2,
                "observer": "minmax",
            },
        }
    )
    report = compress_and_save(final, cfg, tmp_path / "art", calibration_loader=batches)
    assert report["quantization"]["mode"] == mode
    predictor = load_artifact(tmp_path / "art")
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert manifest["format"] == ("onnx" if backend == "onnxruntime" else "torch") and manifest["how_to_load"]
    # same predictions before saving (the in-memory quantized model) and after reloading
    if backend == "onnxruntime":
        # the reloaded int8 graph computes the fp32 model's function, up to quantization noise
        with torch.no_grad():
            fp32 = torch.cat([final.module(b) for b in predictor.batches(texts)]).numpy()
        int8 = np.concatenate([predictor.logits(b) for b in predictor.batches(texts)])
        assert int8.shape == (40, 6) and np.abs(int8 - fp32).max() < 0.1
    else:
        import copy

        from bertcompress.compression.quant_torch import quantize_torch

        in_memory, _ = quantize_torch(copy.deepcopy(final.module), mode, backend)
        with torch.no_grad():
            before = torch.cat([in_memory(b).float() for b in predictor.batches(texts)]).argmax(-1).numpy()
        assert (predictor.predict_proba(texts).argmax(-1) == before).all()
    if mode == "dynamic" and backend != "onnxruntime":
        assert report["quantization"]["quantized_modules"]
    from bertcompress.benchmark.size import artifact_params

    params = artifact_params(predictor)  # the benchmark counts every backend's parameters
    assert 0 < params["nonzero"] <= params["total"]


def load_artifact_batches(final, texts):
    from bertcompress.data.encoding import PadCollator

    ids = final.encoder(texts)
    collate = PadCollator(final.encoder.tokenizer)
    return [collate([{"input_ids": x} for x in ids[i : i + 8]]) for i in range(0, len(ids), 8)]


@pytest.mark.slow  # trains a tiny model for 3 epochs; `make test-full`
@requires_ubmec
def test_dynamic_int8_agrees_with_fp32_on_a_trained_tiny_model(tmp_path, tiny_run_overrides, ubmec_texts):
    # a decisively trained tiny model (lr 2e-3, 3 epochs, 256 texts): a barely trained one predicts near
    # ties, which any rounding flips, and agreement would measure the ties rather than int8
    trained = ["teacher.epochs=3", "teacher.module.optimizer.lr=2e-3", "data.limit_train=256", "data.limit_test=200"]
    fp32 = run(compose([*tiny_run_overrides, *trained], tmp_path / "a"))
    from bertcompress.artifacts import load_artifact

    texts = ubmec_texts[-300:]
    ref = load_artifact(tmp_path / "a" / "run" / "artifact").predict_proba(texts).argmax(-1)
    q = run(compose([*tiny_run_overrides, *trained, "compression=quant"], tmp_path / "a"))
    assert q["teacher"]["cache_hit"] is True
    got = load_artifact(tmp_path / "a" / "run" / "artifact").predict_proba(texts).argmax(-1)
    assert (ref == got).mean() >= 0.99
    assert fp32["compression"]["quantization"] is None and q["compression"]["quantization"]["backend"] == "torch_ao"


@requires_ubmec
@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_every_compression_config_runs_and_benchmarks(compression, tmp_path, tiny_run_overrides):
    results = run(compose([*tiny_run_overrides, f"compression={compression}", "debug=fdr"], tmp_path))
    bench = results["benchmark"]
    for key in (
        "latency_ms",
        "throughput_seq_s",
        "size_mb",
        "size_zip_mb",
        "params",
        "test",
        "inference",
        "speedup",
        "compression_ratio",
        "machine",
        "reference",
    ):
        assert key in bench, key
    # the timed batch-1 runs the config asks for (n_runs after warmup, at most the test split's texts)
    b, n_test = results["config"]["benchmark"], results["data"]["sizes"]["test"]
    assert bench["latency_ms"]["runs"] == min(b["n_runs"] + b["warmup"], n_test) - min(b["warmup"], n_test)
    assert bench["throughput_seq_s"] > 0 and bench["speedup"] > 0 and bench["size_zip_mb"] > 0
    # sizes are of the files that load: the teacher's safetensors and the artifact's own weights file
    from bertcompress.artifacts import load_artifact

    teacher_mb = (Path(results["teacher"]["model_dir"]) / "model.safetensors").stat().st_size / 1e6
    artifact_mb = load_artifact(results["artifact"]).weights_file.stat().st_size / 1e6
    assert bench["size_mb"] == pytest.approx(artifact_mb) and bench["reference"]["size_mb"] == pytest.approx(teacher_mb)
    assert bench["compression_ratio"] == pytest.approx(teacher_mb / artifact_mb)
    assert 0 <= bench["test"]["accuracy"] <= 100 and bench["test"]["n"] == results["data"]["sizes"]["test"]
    assert bench["machine"]["cpu"] and "torch" in bench["machine"]["versions"]
    assert results["macro_f1"] == bench["test"]["macro_f1"]
    pruning = results["compression"]["pruning"]
    if compression in {"prune", "prune50", "prune_quant"}:
        assert pruning["overall"] == pytest.approx(results["config"]["compression"]["pruning"]["amount"], abs=2e-3)
        assert pruning["per_layer"]
    if compression.startswith("prune_structured"):
        assert pruning["params_after"] < pruning["params_before"]


@requires_ubmec
@pytest.mark.slow
def test_predict_py_classifies_a_bengali_string(tmp_path, tiny_run_overrides):
    run(compose([*tiny_run_overrides, "debug=fdr"], tmp_path))
    artifact = tmp_path / "run" / "artifact"
    out = subprocess.run(
        [sys.executable, str(ROOT / "predict.py"), str(artifact), "আমি খুব খুশি", "--json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    row = json.loads(out.stdout.strip().splitlines()[-1])
    assert row["text"] == "আমি খুব খুশি" and row["label"] in row["probabilities"]
    assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    piped = subprocess.run(
        [sys.executable, str(ROOT / "predict.py"), str(artifact)],
        input="রাগ হচ্ছে\nভয় পাচ্ছি\n",
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert len(piped.stdout.strip().splitlines()) == 2


def test_unstructured_pruning_leaves_dense_latency_alone_but_shrinks_the_zip(tmp_path):
    """The honest part: masked zeros compress on disk; a dense matmul does not skip them."""
    from bertcompress.benchmark.size import zipped_mb

    a, b = nn.Linear(256, 256), nn.Linear(256, 256)
    b.load_state_dict(a.state_dict())
    prune_unstructured([("b", b, "weight")], 0.5)
    torch.save(a.state_dict(), tmp_path / "a.pt")
    from torch.nn.utils import prune as tprune

    tprune.remove(b, "weight")
    torch.save(b.state_dict(), tmp_path / "b.pt")
    assert (tmp_path / "a.pt").stat().st_size == pytest.approx((tmp_path / "b.pt").stat().st_size, rel=0.01)
    assert zipped_mb(tmp_path / "b.pt") < 0.75 * zipped_mb(tmp_path / "a.pt")


@requires_ubmec
def test_gradual_schedule_prunes_while_finetuning(tmp_path, tiny_run_overrides):
    steps = []

    class Spy(PruningCallback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            super().on_train_batch_end(trainer, pl_module, *args)
            steps.append(sparsity(self.modules(pl_module))["overall"])

    import bertcompress.compression.steps as steps_mod

    original = steps_mod.PruningCallback
    steps_mod.PruningCallback = Spy
    try:
        results = run(
            compose(
                [
                    *tiny_run_overrides,
                    "compression=prune",
                    "compression.pruning.schedule=gradual",
                    "compression.pruning.frequency=1",
                    "compression.pruning.amount=0.5",
                    "compression.pruning.finetune_epochs=2",
                ],
                tmp_path,
            )
        )
    finally:
        steps_mod.PruningCallback = original
    assert steps == sorted(steps) and 0 < steps[0] < 0.5  # sparsity ramps up during fine-tuning
    report = results["compression"]["pruning"]
    assert report["schedule"] == "gradual" and report["overall"] == pytest.approx(0.5, abs=2e-3)


def test_zipped_size_is_memoised_per_file_version(tmp_path):
    import os
    import time

    from bertcompress.benchmark.size import _zipped_mb, zipped_mb

    path = tmp_path / "w.bin"
    path.write_bytes(b"\0" * 100_000)
    _zipped_mb.cache_clear()
    small = zipped_mb(path)
    assert zipped_mb(path) == small and _zipped_mb.cache_info().hits == 1
    path.write_bytes(os.urandom(100_000))  # a new version of the file is measured again
    os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert zipped_mb(path) > 10 * small and _zipped_mb.cache_info().misses == 2


def _static_student(kind: str):
    from bertcompress.models.students import StaticEmbedding, bilstm_student, cnn_student, ensemble_student

    torch.manual_seed(0)
    emb = StaticEmbedding(torch.randn(50, 8))
    if kind == "cnn":
        return cnn_student(emb, 3, num_filters=16)
    if kind == "bilstm":
        return bilstm_student(emb, 3, hidden_size=16)
    return ensemble_student(emb, 3, hidden_size=16, num_filters=16)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("cnn", {"encoder.convs.0", "encoder.convs.1", "encoder.convs.2"}),
        ("bilstm", {f"encoder.lstm.weight_{g}_l0{r}" for g in ("ih", "hh") for r in ("", "_reverse")}),
        ("ensemble", None),
    ],
)
def test_static_students_conv_and_lstm_weights_are_pruned(kind, expected):
    """The CNN/BiLSTM students' only Linear is the excluded classifier: their Conv1d and LSTM weights are
    what `compression=prune` prunes (it used to zero nothing in them), with masks hooked or permanent."""
    model = _static_student(kind).eval()
    batch = {"input_ids": torch.randint(0, 50, (4, 7)), "attention_mask": torch.ones(4, 7, dtype=torch.long)}
    with torch.no_grad():
        dense = model(batch)
    targets = prunable_weights(model)
    names = {n for n, *_ in targets}
    if expected is not None:
        assert names == expected
    else:  # BiLSTM + CNN + CNN-LSTM members
        assert any(".lstm.weight_hh_l0" in n for n in names) and any(".convs.2" in n for n in names)
    assert not any("classifier" in n or "embedding" in n for n in names)
    prune_unstructured(targets, 0.5)  # masks as forward pre-hooks (the gradual schedule's state)
    with torch.no_grad():
        hooked = model(batch)
    make_permanent(targets)
    report = sparsity(targets)
    assert report["overall"] == pytest.approx(0.5, abs=2e-3)
    assert all(s == pytest.approx(0.5, abs=0.02) for s in report["per_layer"].values())
    with torch.no_grad():
        permanent = model(batch)
    assert torch.allclose(hooked, permanent, atol=1e-6)  # the forward pass used the pruned weights
    assert not torch.allclose(dense, permanent, atol=1e-4)
    assert not any(k.endswith(("_orig", "_mask")) for k in model.state_dict())


def test_pruning_that_matches_no_layer_is_an_error():
    with pytest.raises(ValueError, match=r"no layer of StaticStudent matches include=\['nothing\*'\]"):
        PruningCallback(0.3, include=["nothing*"]).apply(_static_student("cnn"))
    with pytest.raises(ValueError, match="its prunable layers: none"):
        PruningCallback(0.3).apply(nn.Sequential(nn.ReLU()))


@pytest.mark.parametrize("fuse", [False, True])
def test_fused_int8_onnx_graph_has_fused_attention_and_agrees_with_fp32(fuse, tmp_path, tiny_bert_dir, ubmec_texts):
    import onnx

    from bertcompress.compression.quantization import Quantizer

    final = _final_model(tiny_bert_dir)
    texts = ubmec_texts[:32]
    batches = [{k: b[k] for k in ("input_ids", "attention_mask")} for b in load_artifact_batches(final, texts)]
    q = Quantizer("dynamic", "onnxruntime", quantize_embeddings=True, fuse=fuse).apply(final.module, batches, tmp_path)
    ops = {n.op_type for n in onnx.load(q.onnx_file).graph.node}
    assert ("QAttention" in ops and "SkipLayerNormalization" in ops) is fuse
    assert (q.report["fusion"] is not None) is fuse
    if fuse:
        assert q.report["fusion"]["fused_ops"]["Attention"] == final.hf_model.config.num_hidden_layers
    import onnxruntime as ort

    session = ort.InferenceSession(str(q.onnx_file), providers=["CPUExecutionProvider"])
    for b in batches:  # padded batches: the fused attention must honour the mask
        int8 = session.run(["logits"], {k: b[k].numpy() for k in ("input_ids", "attention_mask")})[0]
        with torch.no_grad():
            fp32 = final.module(b).numpy()
        assert np.abs(int8 - fp32).max() < 0.1


def test_fusion_is_refused_outside_onnxruntime_dynamic():
    from bertcompress.compression.quantization import Quantizer

    with pytest.raises(ValueError, match="fuse=true fuses ONNX graphs"):
        Quantizer("dynamic", "torch_ao", fuse=True)


@pytest.mark.parametrize("observer", ["percentile", pytest.param("entropy", marks=pytest.mark.slow)])
def test_histogram_observers_calibrate_on_batches_of_different_lengths(tmp_path, tiny_bert_dir, observer):
    """Per-token taggers pad each batch to its own longest sentence; ONNX Runtime's histogram observers stack
    the batches' activations, so the calibration reader pads them to one length (masked, with the pad id)."""
    from bertcompress.compression.quant_onnx import _CalibrationReader, export_onnx, quantize_onnx

    final = _final_model(tiny_bert_dir)
    batches = [
        {"input_ids": torch.randint(5, 100, (2, n)), "attention_mask": torch.ones(2, n, dtype=torch.long)}
        for n in (7, 12)
    ]
    batches[0]["input_ids"][1, 5:], batches[0]["attention_mask"][1, 5:] = 3, 0  # padding with id 3
    reader = _CalibrationReader(batches)
    first, second = reader.get_next(), reader.get_next()
    assert reader.get_next() is None and first["input_ids"].shape == second["input_ids"].shape == (2, 12)
    assert (first["input_ids"][:, 7:] == 3).all() and (first["attention_mask"][:, 7:] == 0).all()
    assert (first["input_ids"][:, :7] == batches[0]["input_ids"].numpy()).all()
    fp32 = export_onnx(final.module, tmp_path / "m.onnx", batches[1])
    report = quantize_onnx(fp32, tmp_path / "q.onnx", mode="static", calibration=batches, observer=observer)
    assert report["quantized_ops"].get("QuantizeLinear", 0) > 0


def test_op_types_store_a_cnns_convolutions_in_int8(tmp_path):
    """With ``Conv`` among ``op_types`` static int8 stores the CNN's filters in int8 (1 byte per weight instead
    of 4), and the int8 graph still follows the fp32 one."""
    import onnx
    import onnxruntime as ort

    from bertcompress.compression.quantization import Quantizer

    model = _static_student("cnn").eval()
    conv_params = sum(c.weight.numel() for c in model.encoder.convs)
    batches = [
        {"input_ids": torch.randint(1, 50, (4, 12)), "attention_mask": torch.ones(4, 12, dtype=torch.long)}
        for _ in range(4)
    ]
    files = {}
    for name, ops in (("default", None), ("conv", ["MatMul", "Gemm", "Conv", "Gather"])):
        q = Quantizer("static", "onnxruntime", True, calibration_batches=4, op_types=ops)
        (tmp_path / name).mkdir()
        files[name] = q.apply(model, batches, tmp_path / name)
    assert files["default"].report["op_types_to_quantize"] == [
        "MatMul",
        "Gemm",
        "Attention",
        "Gather",
        "EmbedLayerNormalization",
    ]
    assert files["conv"].report["op_types_to_quantize"] == ["MatMul", "Gemm", "Conv", "Gather"]

    def conv_weight_bytes(path):
        tables = onnx.load(str(path)).graph.initializer
        return sum(
            len(t.raw_data) for t in tables if "convs" in t.name and t.name.endswith(("weight", "weight_quantized"))
        )

    assert conv_weight_bytes(files["default"].onnx_file) == 4 * conv_params
    assert conv_weight_bytes(files["conv"].onnx_file) == conv_params
    feeds = {k: batches[0][k].numpy() for k in ("input_ids", "attention_mask")}
    got = ort.InferenceSession(str(files["conv"].onnx_file), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    with torch.no_grad():
        ref = model({k: batches[0][k] for k in feeds}).numpy()
    assert abs(got - ref).max() < 0.1 * abs(ref).max() + 1e-3
    with pytest.raises(ValueError, match=r"op_types=\['Conv'\].*backend=onnxruntime"):
        Quantizer("dynamic", "torch_ao", op_types=["Conv"])
