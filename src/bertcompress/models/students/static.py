"""Static-embedding students: BiLSTM (Tang et al. 2019, arXiv:1903.12136; Nityasya et al. 2022), Kim CNN
(Kim 2014, filters 3/4/5) and CNN-LSTM (Lin et al. 2024) on one embedding table, and pretrained word vectors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from bertcompress.models.students.ngram import HashedNgramBag
from bertcompress.models.students.registry import register_student


class StaticEmbedding(nn.Module):
    """A token-embedding table shared by the non-transformer students.

    Args:
        weight: (V, D) initial vectors (the teacher's input embeddings or word vectors).
        freeze: keep the table fixed.
        dropout: dropout on the looked-up vectors.
    """

    def __init__(
        self, weight: torch.Tensor, freeze: bool = False, dropout: float = 0.1, padding_idx: int | None = None
    ):
        super().__init__()
        self.embedding = nn.Embedding.from_pretrained(weight.float().clone(), freeze=freeze, padding_idx=padding_idx)
        self.dropout = nn.Dropout(dropout)
        self.dim = weight.shape[1]

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) int64 -> (B, T, D) float."""
        return self.dropout(self.embedding(input_ids))


def zero_padding(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, D) vectors with the padded positions (``mask == 0``, (B, T)) set to 0, so that a convolution
    window that reaches past a text's end sees the zeros of its own zero padding, as it would alone: the
    text's output does not depend on how much longer the other texts of its batch are."""
    return x * mask.unsqueeze(-1).to(x.dtype)


def _masked_pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Concatenate masked max- and mean-pooling over time: (B, T, H) -> (B, 2H)."""
    m = mask.unsqueeze(-1).to(h.dtype)
    mean = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
    mx = h.masked_fill(m == 0, torch.finfo(h.dtype).min).max(1).values
    return torch.cat([mx, mean], dim=-1)


class _Encoder(nn.Module):
    """Base of the static-embedding encoders: ``features(emb (B,T,D), mask (B,T)) -> (B, out_dim)``."""

    out_dim: int

    def features(self, emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class BiLSTMEncoder(_Encoder):
    """One bidirectional LSTM layer (Tang et al. 2019), max+mean pooled."""

    def __init__(self, input_dim: int, hidden_size: int = 256, num_layers: int = 1):
        super().__init__()
        self.lstm = nn.LSTM(input_dim, hidden_size, num_layers=num_layers, batch_first=True, bidirectional=True)
        self.out_dim = 4 * hidden_size

    def features(self, emb, mask):
        lengths = mask.sum(1).clamp_min(1).cpu()
        packed = pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        h, _ = pad_packed_sequence(out, batch_first=True, total_length=emb.shape[1])
        return _masked_pool(h, mask)


class KimCNNEncoder(_Encoder):
    """Kim 2014: parallel 1-D convolutions (kernel sizes 3/4/5), ReLU, max over time."""

    def __init__(self, input_dim: int, num_filters: int = 128, kernel_sizes: Sequence[int] = (3, 4, 5)):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(input_dim, num_filters, k, padding=k // 2) for k in kernel_sizes)
        self.out_dim = num_filters * len(kernel_sizes)

    def features(self, emb, mask):
        x = zero_padding(emb, mask).transpose(1, 2)  # (B, D, T)
        pooled = []
        for conv in self.convs:
            h = torch.relu(conv(x))[..., : mask.shape[1]]  # (B, F, T)
            h = h.masked_fill(mask.unsqueeze(1) == 0, torch.finfo(h.dtype).min)
            pooled.append(h.max(-1).values)
        return torch.cat(pooled, dim=-1)


class CNNLSTMEncoder(_Encoder):
    """The CNN-LSTM fusion of Lin et al. 2024: a convolution for local n-grams, then a BiLSTM."""

    def __init__(self, input_dim: int, num_filters: int = 128, kernel_size: int = 3, hidden_size: int = 128):
        super().__init__()
        self.conv = nn.Conv1d(input_dim, num_filters, kernel_size, padding=kernel_size // 2)
        self.lstm = BiLSTMEncoder(num_filters, hidden_size)
        self.out_dim = self.lstm.out_dim

    def features(self, emb, mask):
        h = torch.relu(self.conv(zero_padding(emb, mask).transpose(1, 2)))[..., : mask.shape[1]].transpose(1, 2)
        return self.lstm.features(h, mask)


class StaticStudent(nn.Module):
    """Static embedding -> encoder -> dropout -> linear. Batch -> logits (B, C).

    With ``bag`` (a :class:`HashedNgramBag`), its (B, bag.dim) vector is concatenated to the encoder's
    features before the dropout and the classifier.
    """

    def __init__(
        self,
        embedding: StaticEmbedding,
        encoder: _Encoder,
        num_labels: int,
        dropout: float = 0.3,
        bag: HashedNgramBag | None = None,
    ):
        super().__init__()
        self.embedding = embedding
        self.encoder = encoder
        self.bag = bag
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.out_dim + (bag.dim if bag is not None else 0), num_labels)

    def forward(self, batch: dict) -> torch.Tensor:
        return self.logits(self.embedding(batch["input_ids"]), batch)

    def logits(self, emb: torch.Tensor, batch: dict) -> torch.Tensor:
        """Logits (B, C) from looked-up embeddings (B, T, D) (shared ones, in an :class:`EnsembleStudent`)."""
        mask = batch["attention_mask"]
        features = self.encoder.features(emb, mask)
        if self.bag is not None:
            features = torch.cat([features, self.bag(batch["input_ids"], mask)], dim=-1)
        return self.classifier(self.dropout(features))


class BiLSTMTagger(nn.Module):
    """Static embedding -> 1-layer BiLSTM -> dropout -> linear per token: batch -> logits (B, T, C).
    The BiLSTM student of Nityasya et al. 2022 for sequence labeling (a BiLSTM tagger, Huang et al.
    2015, arXiv:1508.01991, without the CRF layer)."""

    def __init__(self, embedding: StaticEmbedding, num_labels: int, hidden_size: int = 256, dropout: float = 0.3):
        super().__init__()
        self.embedding = embedding
        self.lstm = nn.LSTM(embedding.dim, hidden_size, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * hidden_size, num_labels)

    def forward(self, batch: dict) -> torch.Tensor:
        mask = batch["attention_mask"]
        emb = self.embedding(batch["input_ids"])
        lengths = mask.sum(1).clamp_min(1).cpu()
        packed = pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        h, _ = pad_packed_sequence(out, batch_first=True, total_length=emb.shape[1])
        return self.classifier(self.dropout(h))


@register_student("bilstm_student", supports_ner=True)
def bilstm_student(
    embedding: StaticEmbedding, num_labels: int, hidden_size: int = 256, dropout: float = 0.3, per_token: bool = False
):
    """BiLSTM student (1 layer, bidirectional): pooled logits (B, C), or with ``per_token`` a tagger (B, T, C)."""
    if per_token:
        return BiLSTMTagger(embedding, num_labels, hidden_size, dropout)
    return StaticStudent(embedding, BiLSTMEncoder(embedding.dim, hidden_size), num_labels, dropout)


@register_student("cnn_student")
def cnn_student(
    embedding: StaticEmbedding,
    num_labels: int,
    num_filters: int = 128,
    kernel_sizes: Sequence[int] = (3, 4, 5),
    dropout: float = 0.3,
    bag_buckets: int = 0,
    bag_dim: int = 64,
    bag_orders: Sequence[int] = (1, 2, 3),
):
    """Kim CNN student (filters 3/4/5); with ``bag_buckets > 0`` a :class:`HashedNgramBag` (fastText) of
    ``bag_buckets`` x ``bag_dim`` params beside it (``student=cnn_bag``)."""
    bag = HashedNgramBag(bag_buckets, bag_dim, bag_orders) if bag_buckets else None
    encoder = KimCNNEncoder(embedding.dim, num_filters, kernel_sizes)
    return StaticStudent(embedding, encoder, num_labels, dropout, bag=bag)


@register_student("cnn_lstm_student")
def cnn_lstm_student(
    embedding: StaticEmbedding, num_labels: int, num_filters: int = 128, hidden_size: int = 128, dropout: float = 0.3
):
    """CNN-LSTM fusion student."""
    return StaticStudent(embedding, CNNLSTMEncoder(embedding.dim, num_filters, 3, hidden_size), num_labels, dropout)


def read_word_vectors(path: str | Path, vocab: set[str] | None = None) -> tuple[list[str], torch.Tensor]:
    """Read a fastText/word2vec ``.vec`` text file (first line ``count dim``), keeping ``vocab`` words.

    Returns:
        (words, (len(words), dim) float tensor).

    Raises:
        FileNotFoundError: naming the path; ValueError: for a malformed line (with its line number).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Word-vector file not found: {path} (student.embedding.vectors)")
    words, rows, dim = [], [], None
    with path.open(encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\n").rstrip().split(" ")
            if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                dim = int(parts[1])
                continue
            if len(parts) < 2:
                continue
            dim = dim or len(parts) - 1
            if len(parts) - 1 != dim:
                raise ValueError(f"{path}:{lineno}: expected {dim} numbers after the word, found {len(parts) - 1}")
            if vocab is not None and parts[0] not in vocab:
                continue
            words.append(parts[0])
            rows.append([float(x) for x in parts[1:]])
    if not rows:
        raise ValueError(f"{path}: no vectors read (none of the corpus words is in the file?)")
    return words, torch.tensor(rows)
