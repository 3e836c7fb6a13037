"""The teacher fine-tuning recipe: layer-wise learning-rate decay."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import requires_ubmec


def test_layer_wise_lr_decay_groups(tiny_bert_dir):
    """LLRD: the head at lr, encoder layer l of L at lr·ξ^(L−l+1), embeddings at lr·ξ^(L+1)."""
    import functools

    from bertcompress.models.classifier import TeacherFinetune

    opt = functools.partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.01)
    m = TeacherFinetune(tiny_bert_dir, ["a", "b"], optimizer=opt, layer_lr_decay=0.5)  # 2 layers
    groups = m.parameter_groups()
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(m.named_parameters())
    assert lr_of[id(named["model.classifier.weight"])] == pytest.approx(1e-3)
    assert lr_of[id(named["model.bert.encoder.layer.1.attention.self.query.weight"])] == pytest.approx(5e-4)
    assert lr_of[id(named["model.bert.encoder.layer.0.output.dense.weight"])] == pytest.approx(2.5e-4)
    assert lr_of[id(named["model.bert.embeddings.word_embeddings.weight"])] == pytest.approx(1.25e-4)
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in m.parameters() if p.requires_grad)
    assert all(g.get("weight_decay") == 0.0 for g in groups if any(p.ndim < 2 for p in g["params"]))
    assert len(opt(groups).param_groups) == len(groups)
    with pytest.raises(ValueError, match="layer_lr_decay"):
        TeacherFinetune(tiny_bert_dir, ["a", "b"], optimizer=opt, layer_lr_decay=1.5)


def test_layer_lr_decay_override_reaches_the_teacher_and_its_cache_key(tmp_path):
    import hydra

    from bertcompress.stages.teacher import teacher_cache_key
    from tests.conftest import compose

    plain = compose([], tmp_path)
    llrd = compose(["+teacher.module.layer_lr_decay=0.85"], tmp_path)
    assert llrd.teacher.module.layer_lr_decay == 0.85 and "layer_lr_decay" not in plain.teacher.module

    class _DM:  # the key's data part is not under test here
        def fingerprint(self):
            return {}

        max_length, batch_size, task = 64, 32, "classification"

    assert teacher_cache_key(plain, _DM()) != teacher_cache_key(llrd, _DM())
    assert hydra.utils.get_class(llrd.teacher.module._target_).__name__ == "TeacherFinetune"


def test_masked_mean_matches_a_hand_computation():
    from bertcompress.models.mean_pool import masked_mean

    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert torch.allclose(masked_mean(h, mask), torch.tensor([[2.0, 3.0], [7.0, 8.0]]))
    assert torch.allclose(masked_mean(h, None)[1], torch.tensor([7.0, 8.0]))
    assert torch.equal(masked_mean(h, torch.zeros(2, 3)), torch.zeros(2, 2))  # no token: zeros, not NaN


def test_mean_pool_teacher_pools_the_mean_and_reloads_through_the_auto_classes(tiny_bert_dir, tmp_path):
    """pooling=mean: logits = classifier(masked mean of the last hidden states), padding changes
    nothing, no pooler, and a saved teacher comes back from AutoConfig/auto_model_class (the loaders of
    the cache, the truncated students and the artifacts) as the same model with the same logits."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from bertcompress.models.classifier import TeacherFinetune, auto_model_class
    from bertcompress.models.mean_pool import MeanPoolBertForSequenceClassification, masked_mean
    from bertcompress.models.student_builder import _load_classifier

    torch.manual_seed(0)
    m = TeacherFinetune(tiny_bert_dir, ["a", "b", "c"], pooling="mean").eval()
    assert isinstance(m.model, MeanPoolBertForSequenceClassification)
    assert not any("pooler" in n for n, _ in m.named_parameters())
    torch.nn.init.normal_(m.model.classifier.weight)  # a head that tells positions apart
    batch = {
        "input_ids": torch.tensor([[2, 40, 41, 42, 3, 0, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 0, 0]]),
    }
    with torch.no_grad():
        logits = m(batch)
        hidden = m.model.bert(**batch).last_hidden_state
        expected = m.model.classifier(masked_mean(hidden, batch["attention_mask"]))
        cls_only = m.model.classifier(hidden[:, 0])
        unpadded = m({k: v[:, :5] for k, v in batch.items()})
    assert logits.shape == (1, 3)
    assert torch.allclose(logits, expected, atol=1e-6) and not torch.allclose(logits, cls_only, atol=1e-3)
    assert torch.allclose(logits, unpadded, atol=1e-5)

    m.save_pretrained(tmp_path, tokenizer=AutoTokenizer.from_pretrained(tiny_bert_dir))
    assert AutoConfig.from_pretrained(tmp_path).model_type == "bert_mean_pool"
    reloaded = auto_model_class("classification").from_pretrained(tmp_path).eval()
    assert isinstance(reloaded, MeanPoolBertForSequenceClassification)
    with torch.no_grad():
        assert torch.allclose(reloaded(**batch).logits, logits, atol=1e-6)
    assert AutoTokenizer.from_pretrained(tmp_path)("ক").input_ids  # the tokenizer still loads from that dir
    assert isinstance(_load_classifier(tmp_path, ["a", "b", "c"]), MeanPoolBertForSequenceClassification)
    encoder = AutoModel.from_pretrained(tmp_path)  # the static-embedding students read the input embeddings
    assert torch.equal(encoder.get_input_embeddings().weight, m.model.get_input_embeddings().weight)
    again = TeacherFinetune(tmp_path, ["a", "b", "c"]).eval()  # pooling=cls keeps a saved model's own head
    with torch.no_grad():
        assert torch.allclose(again(batch), logits, atol=1e-6)


def test_mean_pool_refuses_what_it_cannot_pool(tiny_bert_dir, tiny_electra_dir):
    from bertcompress.models.classifier import TeacherFinetune

    with pytest.raises(ValueError, match="'electra'"):
        TeacherFinetune(tiny_electra_dir, ["a", "b"], pooling="mean")
    with pytest.raises(ValueError, match="ner"):
        TeacherFinetune(tiny_bert_dir, ["O", "B-X", "I-X"], pooling="mean", task="ner")
    with pytest.raises(ValueError, match="pooling='max'"):
        TeacherFinetune(tiny_bert_dir, ["a", "b"], pooling="max")


@requires_ubmec
def test_mean_pool_teacher_runs_end_to_end_into_a_truncated_int8_onnx_student(tmp_path, tiny_run_overrides):
    """The default mean pooling through the whole pipeline: fine-tune, cache, a 1-layer truncated
    student with a reduced vocabulary that keeps the mean pooling, int8 in ONNX Runtime, the artifact."""
    import json

    import onnx
    from transformers import AutoConfig

    from bertcompress.pipeline import run
    from tests.conftest import compose

    overrides = [*tiny_run_overrides, "debug=fdr", "student=teacher_truncated"]
    overrides += ["student.num_layers=1", "student.reduce_vocab=true", "compression=quant_onnx"]
    results = run(compose(overrides, tmp_path))
    assert AutoConfig.from_pretrained(results["teacher"]["model_dir"]).model_type == "bert_mean_pool"
    assert results["student"]["test"]["n"] > 0 and results["final_model"] == "student"
    manifest = json.loads((tmp_path / "run" / "artifact" / "manifest.json").read_text())
    assert manifest["model_name"] == "teacher_truncated"
    ops = {n.op_type for n in onnx.load(tmp_path / "run" / "artifact" / "model.onnx").graph.node}
    assert "ReduceSum" in ops and "Tanh" not in ops  # the masked mean, and no [CLS] pooler (dense + tanh)
