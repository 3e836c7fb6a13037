"""A loaded artifact that classifies raw texts: :class:`Predictor` (written by
:func:`bertcompress.compression.artifact.save_artifact`, loaded by :func:`bertcompress.artifacts.load_artifact`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from bertcompress_runtime.predictor import Predictor as RuntimePredictor
from bertcompress_runtime.predictor import check_outputs, quantization_mode
from torch import nn

from bertcompress.data.encoding import PadCollator, TextEncoder


@dataclass
class Predictor(RuntimePredictor):
    """A loaded artifact: tokenizes with its own tokenizer and runs its model on CPU; the torch-free
    runtime's :class:`bertcompress_runtime.predictor.Predictor` (label names, task, weights file,
    ``predict_proba``) with a torch module, torch batches and sequence labeling on top.

    ``logits(batch)``: batch dict of (B, T) int64 tensors -> (B, C) float32 numpy ((B, T, C) for a
    sequence labeler, ``task == "ner"``, whose texts are word lists). For a text model (``sklearn``
    format: TF-IDF + LR) a batch is a list of B strings, since vectorizing is its model.
    """

    encoder: TextEncoder | None = None
    module: nn.Module | None = None

    @property
    def execution(self) -> dict:
        """As the runtime's, with ``backend: torch`` and the weights' dtype for a torch module."""
        if self.module is None:
            return super().execution
        dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in self.module.parameters()} or {"int8"})
        quant = quantization_mode(self.manifest)
        return {"backend": "torch", "precision": "/".join(dtypes), "quantization": quant}

    def logits(self, batch: dict | list[str]) -> np.ndarray:
        if self.text_model is not None:
            return self.text_model.logits(batch)
        if self.session is not None:
            feeds = {"input_ids": batch["input_ids"].numpy(), "attention_mask": batch["attention_mask"].numpy()}
            return self.session.run(["logits"], feeds)[0]
        with torch.inference_mode():
            return self.module(batch).float().numpy()

    def batches(self, texts: Sequence[str], batch_size: int = 64) -> list[dict]:
        """Tokenize once and pad per batch (dynamic padding): the inputs of timed runs."""
        if self.text_model is not None:
            return [list(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
        ids = self.encoder(list(texts))
        collate = PadCollator(self.encoder.tokenizer)
        out = []
        for i in range(0, len(ids), batch_size):
            b = collate([{"input_ids": x} for x in ids[i : i + batch_size]])
            out.append({"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]})
        return out

    def predict_labels(self, texts: Sequence, batch_size: int = 64) -> list:
        """Predicted label ids: one per text (N,), or for ``task == "ner"`` one per word of each word list
        (words cut off by ``max_length`` are tagged ``O``)."""
        if self.task != "ner":
            return self.predict_proba(texts, batch_size).argmax(-1).tolist() if len(texts) else []
        from bertcompress.data.conll import TokenPadCollator, word_predictions

        names = self.label_names
        fill = names.index("O") if "O" in names else 0
        ids, markers = self.encoder.encode(list(texts))
        collate = TokenPadCollator(self.encoder.tokenizer)
        out = []
        for i in range(0, len(ids), batch_size):
            b = collate(
                [
                    {"input_ids": x, "labels": m}
                    for x, m in zip(ids[i : i + batch_size], markers[i : i + batch_size], strict=True)
                ]
            )
            logits = self.logits({"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]})
            check_outputs(self.path, logits.shape[-1], names)
            out += word_predictions(
                b["labels"].tolist(), logits.argmax(-1).tolist(), [len(t) for t in texts[i : i + batch_size]], fill
            )
        return out
