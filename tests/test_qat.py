"""QAT with distillation: the fake-quant Linear against a hand-computed value, the teacher callback, and a
tiny run whose int8 QDQ ONNX artifact holds int8 weights, matches the fake-quant model and runs without torch;
structured pruning in steps, with layers dropped and distilled recovery."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from tests.conftest import compose, requires_ubmec
from tests.test_runtime import run_without_torch


def test_fake_quant_linear_against_a_hand_computed_value():
    from bertcompress.compression.qat import FakeQuantLinear

    lin = nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.5, -1.27], [0.1, 0.2]]))
        lin.bias.copy_(torch.tensor([0.01, -0.02]))
    fq = FakeQuantLinear(lin).eval()
    x = torch.tensor([[0.3, -0.2]])
    fq(x)  # calibration: the input range becomes [-0.2, 0.3]
    assert fq.act_range.tolist() == pytest.approx([-0.2, 0.3])
    # by hand: input scale 0.5/255, zero point round(0.2/scale) = 102; 0.3 -> round(153) = 153 + 102 = 255 -> 0.3,
    # -0.2 -> -102 + 102 = 0 -> -0.2. Weights per row: scale 1.27/127 = 0.01 (0.5 -> 50, -1.27 -> -127), and
    # 0.2/127 (0.1 -> 63.5 -> 64 -> 0.1007874, 0.2 -> 127 -> 0.2).
    w = np.array([[0.5, -1.27], [64 * 0.2 / 127, 0.2]])
    expected = np.array([0.3, -0.2]) @ w.T + np.array([0.01, -0.02])
    assert fq(x).detach().numpy()[0] == pytest.approx(expected, abs=1e-6)
    fq.freeze()  # the exported form computes the same
    assert fq(x).detach().numpy()[0] == pytest.approx(expected, abs=1e-6)


def test_the_input_teacher_callback_gives_the_teachers_logits_on_the_same_batch():
    from bertcompress.distill.soft_targets import InputTeacherCallback

    class Teacher(nn.Module):
        def forward(self, batch):
            return batch["input_ids"].float()[:, :3] * 2

    batch = {"input_ids": torch.tensor([[1, 2, 3, 4]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    InputTeacherCallback(Teacher()).on_train_batch_start(None, None, batch, 0)
    assert batch["teacher_logits"].tolist() == [[2.0, 4.0, 6.0]]


@requires_ubmec
def test_qat_ships_an_int8_qdq_graph_that_matches_its_fake_quant_model(tmp_path, tiny_run_overrides, ubmec_texts):
    from bertcompress.pipeline import run

    results = run(compose([*tiny_run_overrides, "compression=qat"], tmp_path))
    q = results["compression"]["quantization"]
    art = tmp_path / "run" / "artifact"
    graph = onnx.load(str(art / "model.onnx"))
    int8 = [i for i in graph.graph.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 2]
    assert q["method"] == "qat" and q["weights_folded_to_int8"] == q["layers"] == len(int8) > 0
    tables = [i.name for i in graph.graph.initializer if i.data_type == onnx.TensorProto.UINT8 and len(i.dims) == 2]
    # the embedding tables are stored in 8 bits after the export, and no fp32 copy of them is left
    assert {t.split(".")[-2] for t in tables} >= {"word_embeddings", "position_embeddings"}
    floats = [i.name for i in graph.graph.initializer if i.data_type == onnx.TensorProto.FLOAT and len(i.dims) == 2]
    assert not any("embeddings" in n for n in floats)
    assert q["embeddings_int8"]["argmax_agreement"] >= 0.9 and q["embeddings_int8"]["max_abs_logit_diff"] > 0
    names = {i.name for i in graph.graph.initializer}
    assert not any(n.endswith(".w_t") or n.endswith("dense.weight") for n in names)  # no fp32 copy of the weights
    assert q["onnx_vs_fake_quant"]["max_abs_logit_diff"] < 1e-4 and q["onnx_vs_fake_quant"]["argmax_agreement"] == 1.0
    bench = results["benchmark"]  # benchmarked like every artifact, and said to be a QAT graph
    assert bench["speedup"] > 0 and bench["size_mb"] > 0 and bench["execution"]["quantization"] == "qat"
    texts = ubmec_texts[400:420]
    (tmp_path / "t.json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    proc = run_without_torch(
        f"""
        import json
        from bertcompress_runtime import load
        m = load({str(art)!r})
        print(json.dumps(m.predict_proba(json.load(open({str(tmp_path / "t.json")!r}, encoding="utf-8"))).tolist()))
        """
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    from bertcompress.artifacts import load_artifact

    assert np.abs(np.array(json.loads(proc.stdout)) - load_artifact(art).predict_proba(texts)).max() < 1e-5


def _tiny_hf(tiny_bert_dir):
    from tests.test_compression import _final_model

    return _final_model(tiny_bert_dir)


def test_structured_pruning_in_steps_reaches_the_fractions_and_drops_layers(tmp_path, tiny_bert_dir, ubmec_texts):
    """The tiny BERT: 2 layers, 2 heads, 64 FFN neurons. Two steps of 50% end at 1 head and 32 neurons;
    layer_fraction 0.5 keeps the first layer, and the torch artifact rebuilds that shape."""
    from omegaconf import OmegaConf

    from bertcompress.artifacts import load_artifact
    from bertcompress.compression.apply import compress_and_save
    from tests.test_compression import load_artifact_batches

    final = _tiny_hf(tiny_bert_dir)
    batches = [{**b, "labels": torch.zeros(len(b["input_ids"]), dtype=torch.long)}
               for b in load_artifact_batches(final, ubmec_texts[:16])]  # fmt: skip
    cfg = OmegaConf.create({"name": "p", "quantization": None, "pruning": {
        "_target_": "bertcompress.compression.steps.StructuredPruning", "head_fraction": 0.5, "neuron_fraction": 0.5,
        "steps": 2, "layer_fraction": 0.5, "finetune_epochs": 0}})  # fmt: skip
    report = compress_and_save(final, cfg, tmp_path / "a", batches)["pruning"]
    assert report["layers_kept"] == [0] and report["structure"] == {"heads": [1], "intermediate": [32]}
    assert [s["structure"]["intermediate"] for s in report["steps"]] == [[48], [32]]
    assert report["params_after"] < report["params_before"]
    loaded = load_artifact(tmp_path / "a")
    assert loaded.module.model.config.num_hidden_layers == 1
    texts = ubmec_texts[:8]
    assert loaded.predict_proba(texts).shape == (8, 6)


def test_distilled_recovery_maps_each_kept_layer_to_its_unpruned_self(tiny_bert_dir):
    import copy

    from bertcompress.compression.steps import CompressionContext, StructuredPruning
    from bertcompress.compression.structured import drop_layers

    final = _tiny_hf(tiny_bert_dir)
    step = StructuredPruning(
        steps=1, layer_fraction=0.5, distill={"temperature": 2.0, "alpha": 0.5, "hidden_weight": 0.3}
    )
    teacher = copy.deepcopy(final.module)
    kept = drop_layers(final.hf_model, 0.5, "uniform")
    recovery = step._recovery(teacher, kept, CompressionContext("t", final.hf_model))
    term = recovery["terms"]["hidden"]
    assert kept == [0] and term.pairs == [(1, 1)] and term.weight == 0.3 and recovery["loss"].alpha == 0.5
    with pytest.raises(ValueError, match="distill: unknown keys"):
        StructuredPruning(distill={"temprature": 2.0})


def test_distilled_recovery_runs_the_teacher_once_per_step_for_its_logits_and_features(tiny_bert_dir, ubmec_texts):
    """The recovery's logit term reads the teacher's logits of the pass that gives its hidden states: one
    teacher forward per step, and the same loss as with the logits put on the batch beforehand."""
    import copy

    from bertcompress.compression.steps import CompressionContext, StructuredPruning
    from bertcompress.distill.feature_module import FeatureDistillStudent
    from bertcompress.distill.soft_targets import InputTeacherCallback
    from tests.test_compression import load_artifact_batches

    final = _tiny_hf(tiny_bert_dir)
    teacher = copy.deepcopy(final.module)
    torch.manual_seed(0)
    for p in final.module.parameters():  # a student that differs from its teacher
        p.data.add_(0.05 * torch.randn_like(p))
    step = StructuredPruning(steps=1, distill={"temperature": 2.0, "alpha": 0.5, "hidden_weight": 0.3})
    rec = step._recovery(teacher, None, CompressionContext("t", final.hf_model))
    lit = FeatureDistillStudent(
        final.module, list("abcdef"), rec["loss"], rec["terms"], teacher.model, None, True, None, logits_in_loop=True
    ).eval()
    lit.log = lambda *args, **kwargs: None
    batch = load_artifact_batches(final, ubmec_texts[:8])[0]
    batch["labels"] = torch.arange(len(batch["input_ids"])) % 6
    calls = []
    teacher.model.register_forward_hook(lambda *args: calls.append(1))
    in_loop = lit.training_step(dict(batch), 0)
    assert len(calls) == 1
    cached = dict(batch)
    InputTeacherCallback(teacher).on_train_batch_start(None, None, cached, 0)
    lit.logits_in_loop = False
    assert in_loop.item() == pytest.approx(lit.training_step(cached, 0).item(), rel=1e-5)
    lit.kd = False  # labels and hidden states only: the logit term did count
    assert lit.training_step(cached, 0).item() != pytest.approx(in_loop.item(), rel=1e-3)
