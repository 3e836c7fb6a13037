"""Build the student a ``conf/student/*.yaml`` describes, with the encoder (tokenizer) it reads text with.

Kinds (``student.kind``):
- ``hf``: a hub model (``student.hub_id``) with a fresh classification head;
- ``truncated``: the fine-tuned teacher with only ``student.num_layers`` (or ``student.layers``) kept;
- ``static``: a BiLSTM / CNN / CNN-LSTM / ensemble on a static embedding taken from the teacher's
  input embeddings (its tokenizer, reduced to the training corpus) or from a ``.vec`` word-vector file.

``student.reduce_vocab=true`` applies :func:`bertcompress.models.vocab.reduce_vocabulary` to
transformer students.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from bertcompress.data.encoding import TextEncoder
from bertcompress.data.normalize import get_text_normalizer
from bertcompress.models.params import count_parameters
from bertcompress.models.resolver import resolve_model
from bertcompress.models.students import (
    HFStudent,
    StaticEmbedding,
    read_word_vectors,
    truncate_layers,
    truncation_layers,
)
from bertcompress.models.students.registry import get_student
from bertcompress.models.students.spec import static_spec
from bertcompress.models.vocab import corpus_keep_ids, reduce_tokenizer, reduce_vocabulary

log = logging.getLogger(__name__)

KINDS = ("hf", "truncated", "static")


@dataclass
class StudentBundle:
    """A student ready for distillation: the module (batch -> logits), its text encoder, and facts about it."""

    module: nn.Module
    encoder: TextEncoder
    info: dict = field(default_factory=dict)


def _label_config(model_config, label_names):
    model_config.num_labels = len(label_names)
    model_config.id2label = dict(enumerate(label_names))
    model_config.label2id = {n: i for i, n in enumerate(label_names)}
    return model_config


def _load_classifier(model_dir: Path, label_names, task: str = "classification"):
    from transformers import AutoConfig

    from bertcompress.models.tasks import auto_model_class

    config = AutoConfig.from_pretrained(model_dir)
    same = len(getattr(config, "id2label", {}) or {}) == len(label_names)
    config = _label_config(config, label_names)
    model = auto_model_class(task).from_pretrained(model_dir, config=config, ignore_mismatched_sizes=not same)
    return model.train()


def _fasttext_embedding(path: str, texts: list[str]):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pre = pre_tokenizers.Whitespace()
    corpus_words = {w for t in texts for w, _ in pre.pre_tokenize_str(t)}
    words, vectors = read_word_vectors(path, corpus_words)
    vocab = {"[PAD]": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")
    weight = torch.cat([torch.zeros(1, vectors.shape[1]), vectors.mean(0, keepdim=True), vectors])
    coverage = len(words) / max(1, len(corpus_words))
    return fast, weight, {"source": "fasttext", "vectors": str(path), "words": len(words), "corpus_coverage": coverage}


def _transformer_student(cfg, kind, teacher_dir, label_names, train_texts, cache_dir, task, info: dict):
    """A hub model (``kind: hf``) or the fine-tuned teacher truncated to some layers (``truncated``), with its
    vocabulary optionally reduced to the corpus; returns ``(module, tokenizer)`` and fills ``info``."""
    from transformers import AutoTokenizer

    source = resolve_model(cfg.hub_id, cache_dir=cache_dir) if kind == "hf" else Path(teacher_dir)
    model = _load_classifier(source, label_names, task)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if kind == "truncated":
        n = model.config.num_hidden_layers
        layers = list(cfg.layers) if cfg.get("layers") else truncation_layers(n, int(cfg.num_layers))
        truncate_layers(model, layers)
        info.update(teacher_layers=n, layers=layers)
    kept = None
    if cfg.get("reduce_vocab", False):
        model, tokenizer, red = reduce_vocabulary(model, tokenizer, train_texts)
        info["vocab_reduction"] = red.as_dict()
        kept = red.kept_ids
    if cfg.get("freeze_word_embeddings", False):
        # `+student.freeze_word_embeddings=true`: the input word-embedding matrix keeps the teacher's
        # values (me5_small: 96M of 107M params), which halves a CPU KD step; not in the yaml, so
        # the cached students keep their keys
        model.get_input_embeddings().weight.requires_grad_(False)
        info["frozen_word_embeddings"] = int(model.get_input_embeddings().weight.numel())
    student = HFStudent(model)
    # the teacher's id of each student token id (truncated students read the teacher's tokens): what feature
    # distillation feeds the teacher; None when the ids are the teacher's own or the tokenizer is another
    student.teacher_token_ids = kept if kind == "truncated" else None
    return student, tokenizer


def _extra_ids(emb_cfg, tokenizer, vocab_size: int) -> list[int]:
    """Teacher token ids kept beyond the corpus' (``student.embedding.keep``): ``all`` keeps the whole table;
    ``{top_n: N, reference: FILE}`` the N pieces most frequent in a reference corpus (one text per line, or
    a CSV/TSV/XLSX with a ``text`` column; e.g. the unlabeled pools); null (default) none.

    Raises:
        ValueError: another value (naming the key).
    """
    from collections import Counter

    keep = emb_cfg.get("keep")
    if keep is None:
        return []
    if keep == "all":
        return list(range(vocab_size))
    if not OmegaConf.is_dict(keep) or not keep.get("top_n") or not keep.get("reference"):
        raise ValueError(f"student.embedding.keep={keep!r}: expected null, 'all' or {{top_n: N, reference: FILE}}")
    from bertcompress.data.augment import read_unlabeled

    texts = read_unlabeled(keep.reference, key="student.embedding.keep.reference")
    counts: Counter = Counter()
    for i in range(0, len(texts), 1024):
        for ids in tokenizer(texts[i : i + 1024], truncation=False)["input_ids"]:
            counts.update(ids)
    return [i for i, _ in counts.most_common(int(keep.top_n))]


def _static_student(cfg, teacher_dir, label_names, train_texts, task, info: dict):
    """A static-embedding student on the teacher's input embeddings cut to the corpus' tokens (or fastText
    vectors); returns ``(module, tokenizer, whether the vectors are fastText's)`` and fills ``info``."""
    from transformers import AutoModel, AutoTokenizer

    emb_cfg = cfg.embedding
    if emb_cfg.source == "teacher":
        tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
        table = AutoModel.from_pretrained(teacher_dir).get_input_embeddings().weight.detach()
        keep = corpus_keep_ids(tokenizer, train_texts, table.shape[0], _extra_ids(emb_cfg, tokenizer, table.shape[0]))
        weight = table[torch.tensor(keep)]
        tokenizer = reduce_tokenizer(tokenizer, keep)
        info["embedding"] = {
            "source": "teacher", "teacher_vocab": int(table.shape[0]), "kept_vocab": len(keep),
            "corpus_texts": len(train_texts), "keep": OmegaConf.to_container(emb_cfg, resolve=True).get("keep"),
        }  # fmt: skip
    elif emb_cfg.source == "fasttext":
        tokenizer, weight, info["embedding"] = _fasttext_embedding(emb_cfg.vectors, train_texts)
    else:
        raise ValueError(f"student.embedding.source={emb_cfg.source!r}: expected 'teacher' or 'fasttext'")
    embedding = StaticEmbedding(
        weight, freeze=emb_cfg.freeze, dropout=emb_cfg.get("dropout", 0.1), padding_idx=tokenizer.pad_token_id
    )
    extra = {"per_token": True} if task == "ner" else {}
    module = hydra.utils.instantiate(cfg.model, embedding=embedding, num_labels=len(label_names), **extra)
    kwargs = {k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items() if not k.startswith("_")}
    # how an artifact rebuilds it (safetensors + JSON, no pickle)
    module.build_spec = static_spec(cfg.model._target_, kwargs, embedding, len(label_names), task == "ner")
    return module, tokenizer, emb_cfg.source == "fasttext"


def check_ner_student(cfg: DictConfig) -> None:
    """Raise ValueError when the ``student`` config cannot tag tokens (``task=ner``): a static student whose
    registered builder does not support it (only the BiLSTM tagger does)."""
    target = str((cfg.get("model") or {}).get("_target_", ""))
    if cfg.get("kind") == "static" and not get_student(target).supports_ner:
        raise ValueError(
            f"student={cfg.name}: task=ner supports the static BiLSTM tagger (student=bilstm), the truncated "
            "teacher and hub students; the CNN and ensemble students pool a whole text"
        )


def build_student(
    cfg: DictConfig,
    teacher_dir: Path,
    label_names: list[str],
    train_texts: list[str],
    max_length: int,
    cache_dir: str | Path | None = None,
    teacher_normalizer: str | None = None,
    task: str = "classification",
) -> StudentBundle:
    """Build the configured student.

    Args:
        cfg: the ``student`` config node (``kind``, ``hub_id``/``num_layers``/``embedding``, ``model``).
        teacher_dir: the fine-tuned teacher's HF dir (source of truncated students and static embeddings).
        label_names: class names in id order.
        train_texts: the training corpus (vocabulary reduction keeps the tokens it uses).
        max_length: truncation length of the student's encoder.
        task: ``classification`` or ``ner`` (token-classification heads, a :class:`TokenEncoder`, and of
            the static students only the BiLSTM, as a tagger; ``train_texts`` are then word lists).

    Raises:
        ValueError: for an unknown ``student.kind``, bad layer settings, or a static student other than
            the BiLSTM for ``task=ner``.
    """
    kind = cfg.get("kind")
    if kind not in KINDS:
        raise ValueError(f"student.kind={kind!r} (student={cfg.get('name')}): expected one of {KINDS}")
    info: dict = {"name": cfg.name, "kind": kind}
    if task == "ner":
        train_texts = [" ".join(words) for words in train_texts]  # the vocabulary of the corpus
        check_ner_student(cfg)
    normalizer_name = cfg.get("text_normalizer", teacher_normalizer if kind != "hf" else None)
    if kind in {"hf", "truncated"}:
        module, tokenizer = _transformer_student(
            cfg, kind, teacher_dir, label_names, train_texts, cache_dir, task, info
        )
    else:
        module, tokenizer, fasttext = _static_student(cfg, teacher_dir, label_names, train_texts, task, info)
        normalizer_name = None if fasttext else normalizer_name
    info["params"] = count_parameters(module)
    info["text_normalizer"] = normalizer_name
    if task == "ner":
        from bertcompress.data.conll import TokenEncoder

        encoder = TokenEncoder(tokenizer, max_length, get_text_normalizer(normalizer_name))
    else:
        encoder = TextEncoder(tokenizer, max_length, get_text_normalizer(normalizer_name))
    log.info("Student %s (%s): %s params", cfg.name, kind, f"{info['params']['total']:,}")
    return StudentBundle(module, encoder, info)
