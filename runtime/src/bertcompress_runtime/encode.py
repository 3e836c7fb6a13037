"""Texts to padded id arrays with the artifact's own ``tokenizer.json`` (the Rust ``tokenizers`` library,
the backend of transformers' fast tokenizers): the same ids as ``tokenizer(texts, truncation=True,
max_length=...)`` and dynamic padding in the training package."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bertcompress_runtime.text import get_text_normalizer


def _pad_token(directory: Path) -> str | None:
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        file = directory / name
        if file.is_file():
            pad = json.loads(file.read_text(encoding="utf-8")).get("pad_token")
            if isinstance(pad, dict):
                pad = pad.get("content")
            if pad:
                return pad
    return None


class Encoder:
    """Normalize, tokenize (with special tokens, truncated to ``max_length``) and pad.

    Args:
        directory: the artifact dir holding ``tokenizer.json`` (and ``tokenizer_config.json`` for the
            padding token).
        max_length: truncation length in tokens, special tokens included.
        normalizer: a text normalizer name (:func:`get_text_normalizer`) or None.

    Raises:
        FileNotFoundError: no ``tokenizer.json`` in ``directory``.
    """

    def __init__(self, directory: str | Path, max_length: int, normalizer: str | None = None):
        from tokenizers import Tokenizer

        directory = Path(directory)
        file = directory / "tokenizer.json"
        if not file.is_file():
            raise FileNotFoundError(f"{directory}: no tokenizer.json (the runtime needs a fast tokenizer's file)")
        self.tokenizer = Tokenizer.from_file(str(file))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(int(max_length))
        self.max_length = int(max_length)
        self.normalize = get_text_normalizer(normalizer)
        pad = _pad_token(directory)
        pad_id = self.tokenizer.token_to_id(pad) if pad else None
        self.pad_id = int(pad_id) if pad_id is not None else 0

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text (unpadded)."""
        texts = [self.normalize(t) for t in texts] if self.normalize else list(texts)
        return [e.ids for e in self.tokenizer.encode_batch(texts)]

    def pad(self, rows: Sequence[list[int]]) -> dict[str, np.ndarray]:
        """``input_ids`` and ``attention_mask``: (B, T) int64, T the longest row."""
        width = max((len(r) for r in rows), default=0)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
            mask[i, : len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask}
