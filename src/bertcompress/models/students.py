"""Student models: hub transformers, a truncated copy of the teacher, and static-embedding
BiLSTM / CNN / CNN-LSTM students and their ensemble.

Every student is an ``nn.Module`` mapping a batch dict (``input_ids``, ``attention_mask``: (B, T))
to logits (B, num_labels).

Sources:
- truncated teacher: DistilBERT's initialisation from every other teacher layer, Sanh et al. 2019
  (arXiv:1910.01108);
- BiLSTM student: Tang et al. 2019 (arXiv:1903.12136), Nityasya et al. 2022;
- CNN student: Kim 2014, "Convolutional Neural Networks for Sentence Classification" (filters 3/4/5);
- CNN-LSTM fusion and the shared-embedding heterogeneous ensemble: Lin et al. 2024;
- hashed bag of subword n-grams beside the CNN: fastText, Joulin et al. 2017 (arXiv:1607.01759).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class HFStudent(nn.Module):
    """Wrap an HF ``*ForSequenceClassification`` model: batch -> logits (B, C) (``*ForTokenClassification``:
    (B, T, C))."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> torch.Tensor:
        return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def truncation_layers(num_layers: int, keep: int) -> list[int]:
    """Evenly spaced layer indices, starting at 0: 12 -> 6 gives 0, 2, 4, 6, 8, 10 (DistilBERT's choice).

    Raises:
        ValueError: unless ``1 <= keep <= num_layers``.
    """
    if not 1 <= keep <= num_layers:
        raise ValueError(f"student.num_layers={keep}: must lie in [1, {num_layers}] (the teacher's layer count)")
    return [round(i * num_layers / keep) for i in range(keep)]


def _layer_list(model: nn.Module) -> tuple[nn.Module, str]:
    """The module holding the transformer blocks and the attribute name (BERT/ELECTRA/XLM-R or DistilBERT)."""
    base = model.base_model
    if hasattr(base, "encoder") and hasattr(base.encoder, "layer"):
        return base.encoder, "layer"
    if hasattr(base, "transformer") and hasattr(base.transformer, "layer"):
        return base.transformer, "layer"
    raise ValueError(f"Cannot find the transformer layers of {type(model).__name__} for truncation")


def truncate_layers(model: nn.Module, layers: Sequence[int]) -> nn.Module:
    """Keep only ``layers`` (indices into the encoder blocks) of an HF model, in place; returns it."""
    holder, attr = _layer_list(model)
    blocks = getattr(holder, attr)
    bad = [i for i in layers if not 0 <= i < len(blocks)]
    if bad:
        raise ValueError(f"student.layers {bad} out of range: the teacher has {len(blocks)} layers")
    setattr(holder, attr, nn.ModuleList([blocks[i] for i in layers]))
    for name in ("num_hidden_layers", "n_layers"):
        if hasattr(model.config, name):
            setattr(model.config, name, len(layers))
    if hasattr(model.config, "layer_types") and model.config.layer_types:
        model.config.layer_types = [model.config.layer_types[i] for i in layers]
    return model


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
        x = emb.transpose(1, 2)  # (B, D, T)
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
        h = torch.relu(self.conv(emb.transpose(1, 2)))[..., : mask.shape[1]].transpose(1, 2)
        return self.lstm.features(h, mask)


class HashedNgramBag(nn.Module):
    """fastText's bag of n-grams (Joulin et al. 2017, "Bag of Tricks for Efficient Text Classification",
    arXiv:1607.01759) over subword ids: every n-gram (n in ``orders``) is hashed into one of ``buckets``
    rows of a table, and the rows are averaged over the text's n-grams. This is the linear bag-of-n-grams
    signal of the TF-IDF floor, which a max-pooled CNN does not sum up. The hashing is integer tensor
    arithmetic inside the model, so the student keeps its ``input_ids``/``attention_mask`` interface
    (and ONNX export).

    Args:
        buckets: rows of the table (the hash range); the table holds buckets x dim params.
        dim: vector size.
        orders: n-gram orders, e.g. ``(1, 2, 3)``.

    Raises:
        ValueError: ``buckets < 2``, ``dim < 1``, or no orders / an order < 1.
    """

    PRIME = 1_000_003

    def __init__(self, buckets: int = 131072, dim: int = 64, orders: Sequence[int] = (1, 2, 3)):
        super().__init__()
        orders = tuple(int(n) for n in orders)
        if int(buckets) < 2 or int(dim) < 1 or not orders or min(orders) < 1:
            raise ValueError(
                f"student.model: bag_buckets={buckets} (>= 2), bag_dim={dim} (>= 1) and bag_orders={list(orders)} "
                "(n-gram orders >= 1) are required for the n-gram bag"
            )
        self.buckets, self.dim, self.orders = int(buckets), int(dim), orders
        self.table = nn.Embedding(self.buckets, self.dim)
        nn.init.uniform_(self.table.weight, -1.0 / self.dim, 1.0 / self.dim)  # fastText's initialisation

    def ngram_hashes(self, input_ids: torch.Tensor, mask: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Bucket ids (B, T-n+1) of the n-grams starting at each position, and their validity (B, T-n+1):
        1 where all n tokens are real (not padding). Slices use negative stops, so ONNX keeps T dynamic."""
        windows = [input_ids[:, k : -(n - 1 - k) or None] for k in range(n)]
        masks = [mask[:, k : -(n - 1 - k) or None] for k in range(n)]
        h = windows[0] % self.buckets
        valid = masks[0].to(torch.float32)
        for w, m in zip(windows[1:], masks[1:], strict=True):
            h = (h * self.PRIME + w) % self.buckets
            valid = valid * m.to(torch.float32)
        if n > 1:  # the order salts the hash, so a bigram does not share its bucket pattern with unigrams
            h = (h * self.PRIME + n) % self.buckets
        return h, valid

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T) int64 ids and (B, T) mask -> (B, dim) float: the mean vector of the valid n-grams."""
        total, count = 0.0, 0.0  # tensors after the first order; the table may be a quantized module
        for n in self.orders:
            h, valid = self.ngram_hashes(input_ids, mask, n)
            vectors = self.table(h)  # (B, T-n+1, dim)
            total = total + (vectors * valid.unsqueeze(-1).to(vectors.dtype)).sum(1)
            count = count + valid.sum(1, keepdim=True)
        return total / count.clamp_min(1.0).to(total.dtype)


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


def bilstm_student(
    embedding: StaticEmbedding, num_labels: int, hidden_size: int = 256, dropout: float = 0.3, per_token: bool = False
):
    """BiLSTM student (1 layer, bidirectional): pooled logits (B, C), or with ``per_token`` a tagger (B, T, C)."""
    if per_token:
        return BiLSTMTagger(embedding, num_labels, hidden_size, dropout)
    return StaticStudent(embedding, BiLSTMEncoder(embedding.dim, hidden_size), num_labels, dropout)


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


def cnn_lstm_student(
    embedding: StaticEmbedding, num_labels: int, num_filters: int = 128, hidden_size: int = 128, dropout: float = 0.3
):
    """CNN-LSTM fusion student."""
    return StaticStudent(embedding, CNNLSTMEncoder(embedding.dim, num_filters, 3, hidden_size), num_labels, dropout)


class EnsembleStudent(nn.Module):
    """Heterogeneous ensemble sharing one static embedding (Lin et al. 2024).

    Args:
        embedding: the shared table (frozen or tunable, see :class:`StaticEmbedding`).
        members: the member students, each built on ``embedding``.
        combine: ``mean`` (average logits) or ``learned`` (softmax-normalised learned weights).

    Output logits (B, C) = sum_i w_i * logits_i.
    """

    def __init__(self, embedding: StaticEmbedding, members: Sequence[StaticStudent], combine: str = "mean"):
        super().__init__()
        if combine not in {"mean", "learned"}:
            raise ValueError(f"student.model.combine={combine!r}: expected 'mean' or 'learned'")
        if any(m.embedding is not embedding for m in members):
            raise ValueError("every ensemble member must share the ensemble's embedding")
        self.embedding = embedding
        self.members = nn.ModuleList(members)
        self.combine = combine
        self.member_logit_weights = nn.Parameter(torch.zeros(len(members)), requires_grad=combine == "learned")

    def weights(self) -> torch.Tensor:
        return torch.softmax(self.member_logit_weights, dim=0)

    def member_logits(self, batch: dict) -> torch.Tensor:
        """(M, B, C): each member's logits, from one shared embedding lookup."""
        emb = self.embedding(batch["input_ids"])
        return torch.stack([m.logits(emb, batch) for m in self.members])

    def forward(self, batch: dict) -> torch.Tensor:
        return torch.einsum("m,mbc->bc", self.weights(), self.member_logits(batch))


def ensemble_student(
    embedding: StaticEmbedding,
    num_labels: int,
    combine: str = "mean",
    hidden_size: int = 256,
    num_filters: int = 128,
    dropout: float = 0.3,
):
    """BiLSTM + Kim CNN + CNN-LSTM on one shared embedding."""
    members = [
        bilstm_student(embedding, num_labels, hidden_size, dropout),
        cnn_student(embedding, num_labels, num_filters, (3, 4, 5), dropout),
        cnn_lstm_student(embedding, num_labels, num_filters, hidden_size // 2, dropout),
    ]
    return EnsembleStudent(embedding, members, combine)


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


def fold_class_bias(model: nn.Module, class_bias) -> list[str]:
    """Add per-class offsets ``class_bias`` (C,) to the bias of the Linear layer(s) that produce the logits,
    so that ``model(batch)`` returns ``logits + class_bias`` at no inference cost (and through pruning and
    int8 quantization, which keep biases in fp32). The offsets come from
    :func:`bertcompress.distill.multi_teacher.tune_class_bias` (Lipton et al. 2014; Menon et al. 2021).

    The logit layers: each member's classifier for an :class:`EnsembleStudent` (its member weights sum
    to 1, so the ensemble's logits shift by exactly ``class_bias``), the ``classifier`` of a
    :class:`StaticStudent`, else the last ``nn.Linear`` with C outputs (an HF model's head).

    Returns:
        the qualified names of the Linear layers changed.

    Raises:
        ValueError: no Linear layer with C outputs and a bias.
    """
    b = torch.as_tensor(list(class_bias), dtype=torch.float32)
    if isinstance(model, EnsembleStudent):
        names = [f"members.{i}.classifier" for i in range(len(model.members))]
    elif isinstance(model, StaticStudent):
        names = ["classifier"]
    else:
        heads = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and m.out_features == len(b)]
        names = heads[-1:]
    layers = [model.get_submodule(n) for n in names]
    if not layers or any(lin.bias is None or lin.out_features != len(b) for lin in layers):
        raise ValueError(
            f"{type(model).__name__} has no logit Linear layer with {len(b)} outputs and a bias to fold "
            "student.class_bias into; set student.class_bias=null"
        )
    with torch.no_grad():
        for lin in layers:
            lin.bias.add_(b.to(lin.bias.dtype))
    return names
