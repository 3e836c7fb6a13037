"""Feature distillation with the teacher in the loop: the student's and the teacher's hidden states,
attention probabilities and query/key/value projections of one batch, from the models' own outputs and
forward hooks (:mod:`bertcompress.distill.features` holds the terms)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from bertcompress.distill.features import FeatureTerm
from bertcompress.distill.losses import SoftTargetLoss
from bertcompress.distill.module import DistillStudent
from bertcompress.models.students.hf import layer_list


@contextlib.contextmanager
def capture_qkv(model: nn.Module, layers: Sequence[int]) -> Iterator[dict]:
    """``{layer: {"query", "key", "value": (B, T, D)}}`` of the 1-based ``layers``, filled by forward hooks
    on their self-attention projections while the block runs."""
    found: dict[int, dict] = {}
    handles = []
    holder, attr = layer_list(model)
    blocks = getattr(holder, attr)
    for layer in set(layers):
        attn = blocks[layer - 1].attention.self
        found[layer] = {}
        for name in ("query", "key", "value"):

            def hook(module, args, output, store=found[layer], name=name):
                store[name] = output

            handles.append(getattr(attn, name).register_forward_hook(hook))
    try:
        yield found
    finally:
        for h in handles:
            h.remove()


def model_features(model: nn.Module, input_ids, attention_mask, terms: Sequence[FeatureTerm], side: int):
    """``(logits, features)`` of one forward pass; ``side`` 0 picks the student layer of a term's Q/K/V pair,
    1 the teacher's. Features: ``hidden_states`` (tuple of (B, T, D)), ``attentions`` (tuple of (B, H, T, T)
    or None) and ``qkv``."""
    attentions = any(t.needs_attentions for t in terms)
    qkv_layers = [t.needs_qkv[side] for t in terms if t.needs_qkv]
    with capture_qkv(model, qkv_layers) as qkv:
        out = model(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, output_attentions=attentions
        )
    return out.logits, {"hidden_states": out.hidden_states, "attentions": out.attentions, "qkv": qkv}


def feature_losses(
    student: nn.Module, teacher: nn.Module, teacher_ids: torch.Tensor | None, terms: nn.ModuleDict, ids, mask
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """``(student logits, {name: term value}, teacher logits)`` of one batch (B, T): the student's forward
    pass with its features, and the teacher's without gradients, on its own ids (``teacher_ids[ids]``, or
    ``ids``). Logits: (B, C), or (B, T, C) for a tagger."""
    listed = list(terms.values())
    logits, s = model_features(student, ids, mask, listed, 0)
    with torch.no_grad():
        t_ids = teacher_ids.to(ids.device)[ids] if teacher_ids is not None else ids
        t_logits, t = model_features(teacher, t_ids, mask, listed, 1)
    return logits, {name: term(s, t, mask) for name, term in terms.items()}, t_logits


def use_eager_attention(model: nn.Module, terms: Sequence[FeatureTerm]) -> None:
    """Attention-probability terms need eager attention (sdpa returns no probabilities); same outputs."""
    if any(t.needs_attentions for t in terms) and hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")


class FeatureDistillStudent(DistillStudent):
    """:class:`DistillStudent` (the logit term from the batch's ``teacher_logits``) plus intermediate-layer
    terms between ``student.model`` and ``teacher`` (an HF model run without gradients in each training step).

    Args:
        terms: ``{name: FeatureTerm}``, set up for the two models; each weighted term is added to the loss
            and logged as ``train/loss_<name>``.
        teacher: the fine-tuned teacher's HF model. It is not a submodule: neither optimised nor checkpointed.
        teacher_ids: (V_s,) int64, the teacher's id of each student token id when the student's vocabulary was
            reduced, else None (the same tokenizer).
        logits_in_loop: the logit term's soft targets are the teacher's logits of this step's own pass (a
            compressed model distilled from its uncompressed self, on the same tokens), not the batch's
            cached ``teacher_logits``.
        logit_term: False leaves out the logit and label terms: the intermediate terms alone (the first
            stage of TinyBERT's two-stage task distillation, Jiao et al. 2020, arXiv:1909.10351, §3.3).
    """

    def __init__(
        self,
        student: nn.Module,
        label_names: Sequence[str],
        loss: SoftTargetLoss,
        terms: dict[str, FeatureTerm],
        teacher: nn.Module,
        teacher_ids: torch.Tensor | None = None,
        kd: bool = True,
        optimizer: Callable | None = None,
        warmup_ratio: float = 0.1,
        logits_in_loop: bool = False,
        logit_term: bool = True,
    ):
        super().__init__(student, label_names, loss, kd, optimizer, warmup_ratio)
        self.terms, self.logits_in_loop, self.logit_term = nn.ModuleDict(terms), bool(logits_in_loop), bool(logit_term)
        self._teacher = [teacher.eval().requires_grad_(False)]
        if teacher_ids is not None:
            self.register_buffer("teacher_ids", teacher_ids, persistent=False)
        else:
            self.teacher_ids = None
        use_eager_attention(student.model, list(terms.values()))
        use_eager_attention(teacher, list(terms.values()))

    def on_fit_start(self) -> None:
        self._teacher[0].to(self.device)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        logits, values, t_logits = feature_losses(
            self.student.model, self._teacher[0], self.teacher_ids, self.terms, ids, mask
        )
        teacher_logits, teacher_mask = batch.get("teacher_logits"), batch.get("teacher_mask")
        if self.logits_in_loop:
            teacher_logits = t_logits.float()
            if t_logits.dim() == 3 and "labels" in batch:  # a tagger: the labelled tokens
                teacher_mask = batch["labels"] != -100
        teacher_logits = teacher_logits if self.kd else None
        n = len(logits)
        if self.logit_term:
            total, kd, ce = self.loss_fn(logits, teacher_logits, batch.get("labels"), teacher_mask)
            self.log("train/loss_kd", kd, batch_size=n)
            self.log("train/loss_ce", ce, batch_size=n)
        else:
            total = logits.new_zeros(())
        for name, value in values.items():
            total = total + self.terms[name].weight * value
            self.log(f"train/loss_{name}", value, batch_size=n)
        self.log("train/loss", total, prog_bar=True, batch_size=n)
        return total
