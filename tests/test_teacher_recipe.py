"""The teacher fine-tuning recipe: layer-wise learning-rate decay."""

from __future__ import annotations

import pytest
import torch


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

    from bertcompress.pipeline import teacher_cache_key
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
