"""Intermediate-layer distillation: each term against a value computed by hand on tiny tensors, the layer
maps and their errors, and a tiny truncated student distilled with hidden-state, attention and relation
terms through the pipeline (each term logged apart)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from bertcompress.distill.features import (
    AttentionLoss,
    AttentionRelationKL,
    HiddenStateCosine,
    HiddenStateMSE,
    feature_terms,
    layer_pairs,
)
from tests.conftest import compose, requires_ubmec


def _config(layers=2, hidden=2, heads=1):
    return SimpleNamespace(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads)


MASK = torch.tensor([[1, 1, 0]])  # the third position is padding: it must not count


def test_hidden_state_mse_by_hand():
    term = HiddenStateMSE(layer_map="last", projection=False)
    term.setup(_config(1), _config(1), "k")
    hs = torch.tensor([[[1.0, 2.0], [0.0, 0.0], [9.0, 9.0]]])
    ht = torch.tensor([[[0.0, 2.0], [2.0, 0.0], [0.0, 0.0]]])
    # valid tokens: (1-0)^2 + (2-2)^2 + (0-2)^2 + 0 = 5 over 2 tokens x width 2
    value = term({"hidden_states": (None, hs)}, {"hidden_states": (None, ht)}, MASK)
    assert value.item() == pytest.approx(5 / 4)


def test_hidden_state_mse_projects_a_narrower_student_with_a_learned_map():
    term = HiddenStateMSE(layer_map="last")
    term.setup(_config(1, hidden=2), _config(1, hidden=3), "k")
    with torch.no_grad():
        term.proj[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))  # (3, 2): h W^T
    hs = torch.tensor([[[1.0, 2.0], [0.0, 1.0], [5.0, 5.0]]])
    ht = torch.tensor([[[1.0, 2.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]]])
    # projected: [1, 2, 3] and [0, 1, 1]: squared error 9 + 0 over 2 tokens x width 3
    value = term({"hidden_states": (None, hs)}, {"hidden_states": (None, ht)}, MASK)
    assert value.item() == pytest.approx(9 / 6)


def test_hidden_state_cosine_by_hand():
    term = HiddenStateCosine(layer_map="last")
    term.setup(_config(1), _config(1), "k")
    hs = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]])
    ht = torch.tensor([[[0.0, 3.0], [2.0, 0.0], [-1.0, 0.0]]])
    # 1 - cos: 1 and 0 on the valid tokens
    value = term({"hidden_states": (None, hs)}, {"hidden_states": (None, ht)}, MASK)
    assert value.item() == pytest.approx(0.5)


@pytest.mark.parametrize("mode,expected", [("kl", math.log(2) / 2), ("mse", 0.125)])
def test_attention_loss_by_hand(mode, expected):
    term = AttentionLoss(layer_map="last", mode=mode)
    term.setup(_config(1), _config(1), "k")
    mask = torch.tensor([[1, 1]])
    a_s = torch.tensor([[[[0.5, 0.5], [0.5, 0.5]]]])
    a_t = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]]])
    # kl rows: log 2 and 0, mean log(2)/2; mse: (0.25 + 0.25 + 0 + 0) / 4
    assert term({"attentions": (a_s,)}, {"attentions": (a_t,)}, mask).item() == pytest.approx(expected)


def test_attention_relation_kl_by_hand():
    term = AttentionRelationKL(relation_heads=1, relations=("query",))
    term.setup(_config(1), _config(1), "k")
    mask = torch.tensor([[1, 1]])
    qs = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # Q Q^T / sqrt(2): [[1, 0], [0, 1]] / sqrt(2)
    qt = torch.tensor([[[1.0, 1.0], [1.0, 1.0]]])  # all 2 / sqrt(2): uniform rows
    e = math.exp(1 / math.sqrt(2))
    p = e / (e + 1)  # the student's rows: (p, 1-p) and (1-p, p)
    kl_row = 0.5 * math.log(0.5 / p) + 0.5 * math.log(0.5 / (1 - p))
    value = term({"qkv": {1: {"query": qs}}}, {"qkv": {1: {"query": qt}}}, mask)
    assert value.item() == pytest.approx(kl_row, rel=1e-5)


def test_layer_maps():
    assert layer_pairs("uniform", 4, 12, "k") == [(1, 3), (2, 6), (3, 9), (4, 12)]
    assert layer_pairs("last", 4, 12, "k") == [(4, 12)]
    assert layer_pairs([[1, 2], [4, 11]], 4, 12, "k") == [(1, 2), (4, 11)]


def test_a_wrong_layer_map_or_width_names_the_key():
    hidden = {"hidden": {"_target_": "bertcompress.distill.features.HiddenStateMSE", "layer_map": [[5, 12]]}}
    with pytest.raises(
        ValueError, match=r"student\.loss\.terms\.hidden\.layer_map=\[\[5, 12\]\]: pairs .* out of range"
    ):
        feature_terms(hidden, _config(4, 384), _config(12, 384))
    narrow = {"h": {"_target_": "bertcompress.distill.features.HiddenStateMSE", "projection": False}}
    with pytest.raises(
        ValueError, match=r"student\.loss\.terms\.h\.projection=false but the student's hidden size 256"
    ):
        feature_terms(narrow, _config(4, 256), _config(12, 384))
    cos = {"c": {"_target_": "bertcompress.distill.features.HiddenStateCosine"}}
    with pytest.raises(ValueError, match=r"student\.loss\.terms\.c: a cosine term needs equal hidden sizes"):
        feature_terms(cos, _config(4, 256), _config(12, 384))
    heads = {"a": {"_target_": "bertcompress.distill.features.AttentionLoss"}}
    with pytest.raises(ValueError, match=r"student\.loss\.terms\.a: attention maps need the same head count"):
        feature_terms(heads, _config(4, 384, 6), _config(12, 384, 12))


@requires_ubmec
def test_a_truncated_student_distils_hidden_states_attention_and_relations(tmp_path, tiny_run_overrides):
    from bertcompress.pipeline import run

    terms = [
        "+student.loss.terms.hidden={_target_:bertcompress.distill.features.HiddenStateMSE,weight:1.0}",
        "+student.loss.terms.attn={_target_:bertcompress.distill.features.AttentionLoss,weight:1.0,mode:kl}",
        "+student.loss.terms.rel={_target_:bertcompress.distill.features.AttentionRelationKL,relation_heads:2}",
    ]
    base = [
        *tiny_run_overrides,
        "student=teacher_truncated",
        "student.num_layers=1",
        "student.epochs=1",
        "trainer.log_every_n_steps=1",
    ]
    base += ["student.reduce_vocab=true", "baseline=none", "benchmark.enabled=false", "data.eval_sets.banemo_dev=null"]
    results = run(compose([*base, *terms], tmp_path))
    metrics = (next((tmp_path / "run" / "csv").rglob("metrics.csv"))).read_text().splitlines()[0].split(",")
    assert {"train/loss_hidden", "train/loss_attn", "train/loss_rel", "train/loss_kd"} <= set(metrics)
    assert results["student"]["loss"]["mode"] == "kl" and results["final_test"]["n"] == 48
    plain = run(compose(base, tmp_path))  # the logit-only student is another cache entry
    assert plain["student"]["cache_dir"] != results["student"]["cache_dir"]
    assert "intermediate_epochs" not in plain["student"]
    two = run(compose([*base, terms[0], "+student.loss.intermediate_epochs=1"], tmp_path))  # TinyBERT's two stages
    assert two["student"]["intermediate_epochs"] == 1 and two["student"]["intermediate_time_s"] > 0
    assert two["student"]["cache_dir"] not in (plain["student"]["cache_dir"], results["student"]["cache_dir"])
    with pytest.raises(ValueError, match=r"student\.loss\.terms \(student=cnn, kind=static\)"):
        run(compose([*tiny_run_overrides, "student=cnn", "baseline=none", terms[0]], tmp_path))


@requires_ubmec
def test_general_distillation_initialises_the_student_once_and_is_cached(tmp_path, tiny_run_overrides, ubmec_texts):
    """Unlabeled texts (a file and the training split), no labels: the truncated student learns the teacher's
    hidden states and attention, the result is cached as its initialisation, and task distillation starts from it."""
    from safetensors.torch import load_file

    from bertcompress.pipeline import run

    pool = tmp_path / "pool.txt"
    pool.write_text("\n".join(ubmec_texts[-120:]), encoding="utf-8")
    general = f"+student.general_distillation={{files:[{pool}],max_texts:150,epochs:1,lr:1e-3,batch_size:16}}"
    base = [*tiny_run_overrides, "student=teacher_truncated", "student.num_layers=1", "student.epochs=1"]
    base += ["baseline=none", "benchmark.enabled=false", "data.eval_sets.banemo_dev=null"]
    first = run(compose([*base, general], tmp_path))
    block = first["student"]["info"]["general_distillation"]
    assert block["cache_hit"] is False and block["n_texts"] == 150 and block["key"]["n_texts"] == 150
    init = load_file(f"{block['cache_dir']}/student.safetensors")
    teacher = load_file(f"{first['teacher']['model_dir']}/model.safetensors")
    name = next(k for k in init if k.endswith("encoder.layer.0.attention.self.query.weight"))
    assert not torch.equal(init[name], teacher[name])  # it learned: the layer moved from the teacher's copy
    again = run(compose([*base, general, "student.seed=5"], tmp_path))  # another task seed: the same init
    assert again["student"]["info"]["general_distillation"]["cache_hit"] is True
    assert again["student"]["cache_dir"] != first["student"]["cache_dir"]


def test_the_intermediate_stage_learns_the_terms_alone_and_leaves_the_classifier(tiny_bert_dir, ubmec_texts):
    """TinyBERT's first stage: the loss is the weighted intermediate terms alone (no logit or label term),
    so the classifier gets no gradient; a stage with no terms, or a bad epoch count, names the key."""
    import copy

    from omegaconf import OmegaConf

    from bertcompress.distill.feature_module import FeatureDistillStudent, feature_losses
    from bertcompress.distill.losses import SoftTargetLoss, intermediate_epochs
    from tests.test_compression import _final_model, load_artifact_batches

    final = _final_model(tiny_bert_dir)
    teacher = copy.deepcopy(final.module.model)
    torch.manual_seed(0)
    for p in final.module.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    term = HiddenStateMSE(0.3, "uniform", projection=False)
    term.setup(final.hf_model.config, teacher.config, "student.loss.terms.hidden")
    lit = FeatureDistillStudent(
        final.module, list("abcdef"), SoftTargetLoss("kl", 2.0, 0.5), {"hidden": term}, teacher, logit_term=False
    ).eval()  # no dropout: the same pass twice
    lit.log = lambda *args, **kwargs: None
    batch = load_artifact_batches(final, ubmec_texts[:8])[0]
    batch["labels"] = torch.arange(len(batch["input_ids"])) % 6
    loss = lit.training_step(batch, 0)
    _, values, _ = feature_losses(
        final.module.model, teacher, None, lit.terms, batch["input_ids"], batch["attention_mask"]
    )
    assert loss.item() == pytest.approx(0.3 * values["hidden"].item(), rel=1e-5)
    loss.backward()
    assert final.module.model.classifier.weight.grad is None
    assert final.module.model.bert.encoder.layer[0].output.dense.weight.grad.abs().sum() > 0
    hidden = {"hidden": {"_target_": "bertcompress.distill.features.HiddenStateMSE"}}
    assert intermediate_epochs(OmegaConf.create({"terms": hidden, "intermediate_epochs": 2})) == 2
    with pytest.raises(ValueError, match=r"student\.loss\.intermediate_epochs=1 needs intermediate terms"):
        intermediate_epochs(OmegaConf.create({"intermediate_epochs": 1}))
    with pytest.raises(ValueError, match=r"student\.loss\.intermediate_epochs=-1: must be an integer"):
        intermediate_epochs(OmegaConf.create({"terms": hidden, "intermediate_epochs": -1}))
