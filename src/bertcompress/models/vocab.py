"""Vocabulary reduction: keep only the tokens a corpus uses (plus the special tokens).

Abdaoui, Pradel & Sigel 2020, "Load What You Need: Smaller Versions of Multilingual BERT"
(arXiv:2010.05609): most of a multilingual model's parameters sit in the embedding rows of tokens
that a given corpus never produces. Dropping them shrinks the model without changing its
predictions on that corpus.

The tokenizer is rebuilt from its ``tokenizer.json`` with the kept entries renumbered
``0..k-1`` (old order kept), so the model and tokenizer stay consistent:

- WordPiece / WordLevel: a vocab dict; greedy longest-match picks the same pieces, since every
  piece the corpus used is kept and nothing longer was added.
- Unigram (SentencePiece): a list of (piece, score); Viterbi finds the same best segmentation
  on corpus text, which used only kept pieces.
- BPE: kept vocab, and only the merges whose parts and result are all kept.

Text outside the corpus may segment differently (into shorter kept pieces, or the unknown token).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class VocabReduction:
    """What :func:`reduce_vocabulary` did: sizes in tokens and parameters."""

    old_vocab_size: int
    new_vocab_size: int
    old_params: int
    new_params: int
    kept_ids: list[int]  # old id of each new id

    def as_dict(self) -> dict:
        return {
            "old_vocab_size": self.old_vocab_size,
            "new_vocab_size": self.new_vocab_size,
            "old_params": self.old_params,
            "new_params": self.new_params,
            "params_removed": self.old_params - self.new_params,
            "size_mb_removed_fp32": 4 * (self.old_params - self.new_params) / 1e6,
        }


def used_token_ids(tokenizer, texts: Iterable[str], batch_size: int = 1024) -> set[int]:
    """Ids the tokenizer produces on ``texts`` (special tokens included), without truncation."""
    texts = list(texts)
    used: set[int] = set()
    for i in range(0, len(texts), batch_size):
        for ids in tokenizer(texts[i : i + batch_size], truncation=False)["input_ids"]:
            used.update(ids)
    return used


def corpus_keep_ids(tokenizer, texts: Iterable[str], vocab_size: int, extra_ids: Iterable[int] = ()) -> list[int]:
    """Ascending ids to keep: those ``texts`` produce, every special/added token, and ``extra_ids``."""
    specials = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    return sorted((used_token_ids(tokenizer, texts) | specials | set(extra_ids)) & set(range(vocab_size)))


def _remap_tokenizer_json(spec: dict, keep: Sequence[int], old_to_new: dict[int, int]) -> dict:
    model = spec["model"]
    kind = model["type"]
    if kind in {"WordPiece", "WordLevel"}:
        model["vocab"] = {tok: old_to_new[i] for tok, i in model["vocab"].items() if i in old_to_new}
    elif kind == "Unigram":
        model["vocab"] = [model["vocab"][i] for i in keep]
        if model.get("unk_id") is not None:
            model["unk_id"] = old_to_new[model["unk_id"]]
    elif kind == "BPE":
        vocab = {tok: old_to_new[i] for tok, i in model["vocab"].items() if i in old_to_new}
        merges = []
        for m in model["merges"]:
            a, b = m.split(" ", 1) if isinstance(m, str) else m
            if a in vocab and b in vocab and (a + b) in vocab:
                merges.append(m)
        model["vocab"], model["merges"] = vocab, merges
    else:
        raise ValueError(f"Vocabulary reduction does not support tokenizer model type {kind!r}")
    for added in spec.get("added_tokens", []):
        added["id"] = old_to_new[added["id"]]
    post = spec.get("post_processor")
    posts = post.get("processors", []) if post and post.get("type") == "Sequence" else [post] if post else []
    for p in posts:
        if p.get("type") == "TemplateProcessing":
            for special in p["special_tokens"].values():
                special["ids"] = [old_to_new[i] for i in special["ids"]]
        for field in ("sep", "cls"):  # BertProcessing / RobertaProcessing: [token, id]
            if field in p:
                p[field] = [p[field][0], old_to_new[p[field][1]]]
    return spec


def reduce_tokenizer(tokenizer, keep: Sequence[int]):
    """A new fast tokenizer with only ``keep`` (old ids, ascending), renumbered 0..k-1."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    old_to_new = {old: new for new, old in enumerate(keep)}
    spec = _remap_tokenizer_json(json.loads(tokenizer.backend_tokenizer.to_str()), keep, old_to_new)
    backend = Tokenizer.from_str(json.dumps(spec))
    specials = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        model_max_length=tokenizer.model_max_length,
        padding_side=tokenizer.padding_side,
        **specials,
    )


def reduce_vocabulary(model: nn.Module, tokenizer, texts: Iterable[str], extra_ids: Iterable[int] = ()):
    """Keep the tokens ``texts`` use (plus all special/added tokens) in ``model`` and ``tokenizer``.

    Works on any HF model with ``get_input_embeddings``/``set_input_embeddings`` (BERT, ELECTRA,
    XLM-R, DistilBERT...); an output embedding tied to the input one is sliced with it.

    Args:
        model: an HF ``PreTrainedModel`` (modified in place and returned).
        tokenizer: its fast tokenizer.
        texts: the corpus (e.g. the training texts).
        extra_ids: more old ids to keep.

    Returns:
        ``(model, new_tokenizer, VocabReduction)``.

    Raises:
        ValueError: for a slow tokenizer or an unsupported tokenizer model type.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("Vocabulary reduction needs a fast tokenizer (tokenizer.json)")
    old_emb = model.get_input_embeddings()
    old_vocab = old_emb.weight.shape[0]
    keep = corpus_keep_ids(tokenizer, texts, old_vocab, extra_ids)
    old_params = sum(p.numel() for p in model.parameters())
    new_tok = reduce_tokenizer(tokenizer, keep)
    index = torch.tensor(keep, dtype=torch.long)
    new_emb = nn.Embedding(len(keep), old_emb.weight.shape[1], padding_idx=None)
    new_emb.weight.data = old_emb.weight.data[index].clone()
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    model.set_input_embeddings(new_emb)
    if out is not None and out.weight.shape[0] == old_vocab:
        out.weight = new_emb.weight if out.weight is old_emb.weight else nn.Parameter(out.weight.data[index].clone())
        if getattr(out, "bias", None) is not None and out.bias.shape[0] == old_vocab:
            out.bias = nn.Parameter(out.bias.data[index].clone())
    old_to_new = {old: new for new, old in enumerate(keep)}
    model.config.vocab_size = len(keep)
    for attr in ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id"):
        value = getattr(model.config, attr, None)
        if isinstance(value, int):
            setattr(model.config, attr, old_to_new.get(value))
    new_params = sum(p.numel() for p in model.parameters())
    return model, new_tok, VocabReduction(old_vocab, len(keep), old_params, new_params, keep)
