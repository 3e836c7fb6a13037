"""Intermediate-layer distillation terms for transformer students, beside the logit term.

Each term is declared under ``student.loss.terms.<name>`` with a ``_target_`` and a ``weight`` (as
torchdistill declares its losses) and is computed from the models' own outputs (``output_hidden_states``,
``output_attentions``) or from forward hooks on the query/key/value projections; no model code is edited.

- :class:`HiddenStateMSE`: TinyBERT's hidden-state loss, MSE(h_s W, h_t) with a learned projection W when
  the widths differ (Jiao et al. 2020, arXiv:1909.10351, eq. 8).
- :class:`AttentionLoss`: TinyBERT's attention loss on the attention probabilities, MSE or KL (eq. 7).
- :class:`HiddenStateCosine`: DistilBERT's cosine loss between hidden states (Sanh et al. 2019,
  arXiv:1910.01108).
- :class:`AttentionRelationKL`: MiniLMv2's self-attention relations, KL between the softmax-normalised
  query-query, key-key and value-value dot products of one layer, split into the same number of relation
  heads in both models, so any head count and width work (Wang et al. 2021, arXiv:2012.15828).

Hidden states are indexed as HF returns them: 0 is the embedding output, l the output of layer l. A layer
map pairs student layers with teacher layers: ``uniform`` (student layer m -> teacher layer m*N/M, TinyBERT's
g(m)), ``last`` (M -> N) or explicit ``[[m, n], ...]``. Padded positions never count.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


def layer_pairs(layer_map, student_layers: int, teacher_layers: int, key: str) -> list[tuple[int, int]]:
    """(student layer, teacher layer) pairs of 1-based layer outputs.

    Raises:
        ValueError: an unknown map name, or a layer out of range, naming ``key``.
    """
    if layer_map == "uniform":
        pairs = [(m, round(m * teacher_layers / student_layers)) for m in range(1, student_layers + 1)]
    elif layer_map == "last":
        pairs = [(student_layers, teacher_layers)]
    elif isinstance(layer_map, Sequence) and not isinstance(layer_map, str):
        pairs = [(int(p[0]), int(p[1])) for p in layer_map]
    else:
        raise ValueError(f"{key}={layer_map!r}: expected 'uniform', 'last' or a list of [student, teacher] layers")
    bad = [(m, n) for m, n in pairs if not (1 <= m <= student_layers and 1 <= n <= teacher_layers)]
    if bad or not pairs:
        raise ValueError(
            f"{key}={layer_map!r}: pairs {bad or pairs} out of range; the student has layers 1..{student_layers}, "
            f"the teacher 1..{teacher_layers}"
        )
    return pairs


def _valid(mask: torch.Tensor) -> torch.Tensor:
    return mask.to(torch.float32)


class FeatureTerm(nn.Module):
    """Base of the terms: ``setup(student_config, teacher_config, key)`` checks and builds parameters once
    the models are known; ``forward(s, t, mask)`` takes dicts of features and returns a scalar."""

    needs_attentions = False
    needs_qkv: tuple[int, int] | None = None  # (student layer, teacher layer) whose Q/K/V are hooked

    def __init__(self, weight: float = 1.0, layer_map="uniform"):
        super().__init__()
        if not float(weight) >= 0:
            raise ValueError(f"a loss term's weight must be >= 0, got {weight}")
        self.weight = float(weight)
        self.layer_map = layer_map
        self.pairs: list[tuple[int, int]] = []

    def setup(self, student_config, teacher_config, key: str) -> None:
        self.pairs = layer_pairs(
            self.layer_map, student_config.num_hidden_layers, teacher_config.num_hidden_layers, f"{key}.layer_map"
        )


class HiddenStateMSE(FeatureTerm):
    """Mean over the mapped layers of the masked MSE between ``h_s W`` and ``h_t``: sum over valid tokens
    of the squared error, divided by (valid tokens x teacher width). Hidden states: (B, T, D).

    Args:
        projection: learn W (D_s x D_t, TinyBERT) when the widths differ; ``always`` learns one even when
            they match; False requires equal widths.

    Raises:
        ValueError: widths that differ with ``projection=false`` (naming the key).
    """

    def __init__(self, weight: float = 1.0, layer_map="uniform", projection: bool | str = True):
        super().__init__(weight, layer_map)
        self.projection_mode = projection
        self.proj = nn.ModuleList()

    def setup(self, student_config, teacher_config, key: str) -> None:
        super().setup(student_config, teacher_config, key)
        ds, dt = student_config.hidden_size, teacher_config.hidden_size
        if ds != dt and not self.projection_mode:
            raise ValueError(
                f"{key}.projection=false but the student's hidden size {ds} differs from the teacher's {dt}; "
                f"set {key}.projection=true (a learned {ds}x{dt} map)"
            )
        if ds != dt or self.projection_mode == "always":
            self.proj = nn.ModuleList(nn.Linear(ds, dt, bias=False) for _ in self.pairs)

    def forward(self, s: dict, t: dict, mask: torch.Tensor) -> torch.Tensor:
        m = _valid(mask).unsqueeze(-1)
        losses = []
        for i, (ls, lt) in enumerate(self.pairs):
            hs = s["hidden_states"][ls]
            hs = self.proj[i](hs) if len(self.proj) else hs
            ht = t["hidden_states"][lt]
            losses.append((((hs - ht) ** 2) * m).sum() / (m.sum() * ht.shape[-1]).clamp_min(1.0))
        return torch.stack(losses).mean()


class HiddenStateCosine(FeatureTerm):
    """Mean over the mapped layers and valid tokens of ``1 - cos(h_s, h_t)`` (DistilBERT). Equal widths.

    Raises:
        ValueError: hidden sizes that differ (naming the key): use :class:`HiddenStateMSE` with a projection.
    """

    def __init__(self, weight: float = 1.0, layer_map="last"):
        super().__init__(weight, layer_map)

    def setup(self, student_config, teacher_config, key: str) -> None:
        super().setup(student_config, teacher_config, key)
        if student_config.hidden_size != teacher_config.hidden_size:
            raise ValueError(
                f"{key}: a cosine term needs equal hidden sizes (student {student_config.hidden_size}, teacher "
                f"{teacher_config.hidden_size}) and has no projection; use bertcompress.distill.features.HiddenStateMSE"
            )

    def forward(self, s: dict, t: dict, mask: torch.Tensor) -> torch.Tensor:
        m = _valid(mask)
        losses = [
            ((1 - F.cosine_similarity(s["hidden_states"][ls], t["hidden_states"][lt], dim=-1)) * m).sum()
            / m.sum().clamp_min(1.0)
            for ls, lt in self.pairs
        ]
        return torch.stack(losses).mean()


class AttentionLoss(FeatureTerm):
    """Attention probabilities (B, H, T, T) of the mapped layers: ``mse`` averages the squared error over
    heads, valid query rows and valid keys; ``kl`` averages KL(teacher row || student row) over heads and
    valid query rows. Needs the same head count in both models.

    Raises:
        ValueError: an unknown mode, or head counts that differ (naming the key).
    """

    needs_attentions = True

    def __init__(self, weight: float = 1.0, layer_map="uniform", mode: str = "kl"):
        super().__init__(weight, layer_map)
        if mode not in {"kl", "mse"}:
            raise ValueError(f"attention loss mode={mode!r}: expected 'kl' or 'mse'")
        self.mode = mode

    def setup(self, student_config, teacher_config, key: str) -> None:
        super().setup(student_config, teacher_config, key)
        hs, ht = student_config.num_attention_heads, teacher_config.num_attention_heads
        if hs != ht:
            raise ValueError(
                f"{key}: attention maps need the same head count (student {hs}, teacher {ht}); use "
                "bertcompress.distill.features.AttentionRelationKL, which works for any head count"
            )

    def forward(self, s: dict, t: dict, mask: torch.Tensor) -> torch.Tensor:
        rows = _valid(mask)[:, None, :, None]  # (B, 1, T, 1): valid query rows
        cols = _valid(mask)[:, None, None, :]
        losses = []
        for ls, lt in self.pairs:
            a_s, a_t = s["attentions"][ls - 1], t["attentions"][lt - 1]
            if self.mode == "mse":
                w = rows * cols
                losses.append((((a_s - a_t) ** 2) * w).sum() / (w.sum() * 1.0).clamp_min(1.0))
            else:
                kl = (a_t * (torch.log(a_t.clamp_min(1e-12)) - torch.log(a_s.clamp_min(1e-12))) * cols).sum(-1)
                w = rows.squeeze(-1).expand_as(kl)
                losses.append((kl * w).sum() / w.sum().clamp_min(1.0))
        return torch.stack(losses).mean()


def relation(x: torch.Tensor, heads: int, mask: torch.Tensor) -> torch.Tensor:
    """MiniLMv2's relation of (B, T, D) vectors split into ``heads``: softmax(x_h x_h^T / sqrt(D/heads)) over
    the valid keys -> (B, heads, T, T).

    Raises:
        ValueError: ``D`` not divisible by ``heads``.
    """
    b, n, d = x.shape
    if d % heads:
        raise ValueError(f"relation_heads={heads} does not divide the width {d}")
    xh = x.view(b, n, heads, d // heads).transpose(1, 2)
    scores = xh @ xh.transpose(-1, -2) / (d // heads) ** 0.5
    scores = scores.masked_fill(mask[:, None, None, :] == 0, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1)


class AttentionRelationKL(FeatureTerm):
    """KL(teacher relation || student relation) of the queries, keys and values of one student layer and
    one teacher layer (MiniLMv2), averaged over the three relations, the relation heads and the valid rows.

    Args:
        student_layer / teacher_layer: 1-based layers (-1: the last).
        relation_heads: the number of relation heads both models' Q/K/V are split into.
        relations: which of ``query``, ``key``, ``value``.

    Raises:
        ValueError: a layer out of range, or widths not divisible by ``relation_heads`` (naming the key).
    """

    def __init__(
        self,
        weight: float = 1.0,
        student_layer: int = -1,
        teacher_layer: int = -1,
        relation_heads: int = 12,
        relations: Sequence[str] = ("query", "key", "value"),
    ):
        super().__init__(weight, "last")
        self.student_layer, self.teacher_layer = int(student_layer), int(teacher_layer)
        self.relation_heads, self.relations = int(relation_heads), tuple(relations)

    def setup(self, student_config, teacher_config, key: str) -> None:
        m, n = student_config.num_hidden_layers, teacher_config.num_hidden_layers
        ls = m if self.student_layer == -1 else self.student_layer
        lt = n if self.teacher_layer == -1 else self.teacher_layer
        self.pairs = layer_pairs([[ls, lt]], m, n, f"{key}.student_layer/teacher_layer")
        self.needs_qkv = self.pairs[0]
        for who, d in (("student", student_config.hidden_size), ("teacher", teacher_config.hidden_size)):
            if d % self.relation_heads:
                raise ValueError(f"{key}.relation_heads={self.relation_heads} does not divide the {who} width {d}")
        bad = [r for r in self.relations if r not in {"query", "key", "value"}]
        if bad:
            raise ValueError(f"{key}.relations: {bad} not among query, key, value")

    def forward(self, s: dict, t: dict, mask: torch.Tensor) -> torch.Tensor:
        rows = _valid(mask)[:, None, :]
        cols = _valid(mask)[:, None, None, :]
        losses = []
        ls, lt = self.pairs[0]
        for r in self.relations:
            rs = relation(s["qkv"][ls][r], self.relation_heads, mask)
            rt = relation(t["qkv"][lt][r], self.relation_heads, mask)
            kl = (rt * (torch.log(rt.clamp_min(1e-12)) - torch.log(rs.clamp_min(1e-12))) * cols).sum(-1)
            w = rows.expand_as(kl)
            losses.append((kl * w).sum() / w.sum().clamp_min(1.0))
        return torch.stack(losses).mean()


def feature_terms(node, student_config, teacher_config) -> dict[str, FeatureTerm]:
    """The terms of ``student.loss.terms`` (``{name: {_target_, weight, ...}}``; a null entry is off),
    each set up for the two models.

    Raises:
        ValueError: a term that is not a :class:`FeatureTerm`, or one whose layers or widths do not fit
            (naming ``student.loss.terms.<name>``).
    """
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    spec = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node or {})
    terms = {}
    for name, cfg in (spec or {}).items():
        if cfg is None:
            continue
        key = f"student.loss.terms.{name}"
        term = instantiate(cfg, _convert_="all")
        if not isinstance(term, FeatureTerm):
            raise ValueError(f"{key}: {cfg.get('_target_')} is not a bertcompress.distill.features term")
        term.setup(student_config, teacher_config, key)
        terms[str(name)] = term
    return terms
