"""A hashed bag of subword n-grams (fastText, Joulin et al. 2017, arXiv:1607.01759), beside the CNN."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


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
