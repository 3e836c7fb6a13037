"""LightningModules for text classification: a shared base and the teacher fine-tuning module."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score
from torchmetrics.metric import jit_distributed_available

from bertcompress.models.mean_pool import POOLINGS, MeanPoolBertForSequenceClassification, mean_pool_config
from bertcompress.models.tasks import TASKS, auto_model_class  # noqa: F401  (their home: models.tasks)


def _metric_set(num_labels: int, prefix: str) -> MetricCollection:
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_labels, average="micro"),
            "macro_f1": MulticlassF1Score(num_labels, average="macro"),
            "f1_per_class": MulticlassF1Score(num_labels, average=None),
        },
        prefix=prefix,
    )


def _one_process() -> bool:
    """torchmetrics' ``distributed_available_fn`` for a one-process loop: compute without syncing."""
    return False


class ClassifierModule(L.LightningModule):
    """Base: metrics, validation/test loops and optimizer wiring for any ``batch -> logits`` model.

    Subclasses implement :meth:`forward` (batch dict -> logits ``(B, num_labels)``) and
    :meth:`training_step`. Logged: ``val/loss``, ``val/acc``, ``val/macro_f1`` and ``val/f1_<label>``
    (likewise ``test/*``); accuracy and F1 in percent (0-100), as in results.json.

    After ``trainer.test``, :attr:`test_outputs` holds ``ids``, ``logits`` (N, C) and ``labels`` (N,);
    for sequence labeling (logits (B, T, C)) ``logits``/``labels`` are per-sentence lists of the
    first-subword rows, (n_i, C) and (n_i,).
    """

    def __init__(self, label_names: Sequence[str], optimizer: Callable | None = None, warmup_ratio: float = 0.1):
        super().__init__()
        self.label_names = list(label_names)
        self.num_labels = len(self.label_names)
        self.optimizer_factory = optimizer
        self.warmup_ratio = warmup_ratio
        self.val_metrics = _metric_set(self.num_labels, "val/")
        self.test_metrics = _metric_set(self.num_labels, "test/")
        self.test_outputs: dict[str, torch.Tensor] = {}
        self._test_buffer: list[tuple] = []
        self._tag_buffer: dict[str, list] = {"val": [], "test": []}

    # ---- evaluation ---------------------------------------------------------------------
    # Sequence labeling (logits (B, T, C), labels (B, T) with -100 off the first subwords) is scored per
    # entity with seqeval at epoch end: val/f1, val/precision, val/recall, val/macro_f1 (over entity
    # types) and val/token_acc; the loss is token CE over the labelled positions.
    def _eval_step(self, batch: dict, metrics: MetricCollection, stage: str) -> torch.Tensor:
        logits = self(batch)
        labels = batch["labels"]
        if logits.dim() == 3:
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
            keep = labels != -100
            preds = logits.argmax(-1)
            for row in range(len(logits)):
                self._tag_buffer[stage].append((labels[row][keep[row]].tolist(), preds[row][keep[row]].tolist()))
        else:
            loss = nn.functional.cross_entropy(logits, labels)
            metrics.update(logits, labels)
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", batch_size=len(logits), sync_dist=True)
        return logits

    def _log_metrics(self, metrics: MetricCollection, stage: str) -> None:
        # DDP fits gather every rank's share; a one-process test beside a live process group (rank 0
        # testing between two distributed fits) must not wait for the other ranks
        world = self._trainer.world_size if self._trainer is not None else 1
        for metric in metrics.values():
            metric.distributed_available_fn = jit_distributed_available if world > 1 else _one_process
        if self._tag_buffer[stage]:
            from bertcompress.metrics import ner_metrics

            rows = self._tag_buffer[stage]
            if world > 1:  # DDP: each rank holds its share of the sentences
                shares = [None] * world
                torch.distributed.all_gather_object(shares, rows)
                rows = [row for share in shares for row in share]
            true, pred = zip(*rows, strict=True)
            m = ner_metrics(true, pred, self.label_names)
            self._tag_buffer[stage] = []
            values = {k: m[k] for k in ("f1", "precision", "recall", "macro_f1")}
            values["token_acc"] = m["accuracy"]
            self.log_dict({f"{stage}/{k}": v for k, v in values.items()}, prog_bar=True)
            for name, v in m["per_type"].items():
                self.log(f"{stage}/f1_{name}", v["f1"])
            return
        values = {k: 100.0 * v for k, v in metrics.compute().items()}  # percent, as results.json
        per_class = values.pop(f"{stage}/f1_per_class")
        self.log_dict(values, prog_bar=True)
        for name, value in zip(self.label_names, per_class, strict=True):
            self.log(f"{stage}/f1_{name}", value)
        metrics.reset()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_metrics(self.val_metrics, "val")

    def on_test_epoch_start(self) -> None:
        self._test_buffer = []

    def test_step(self, batch: dict, batch_idx: int) -> None:
        logits = self._eval_step(batch, self.test_metrics, "test").detach().float().cpu()
        labels = batch["labels"].cpu()
        if logits.dim() == 3:  # per sentence: the logits of the first subwords, (n_words_seen, C)
            logits = [z[y != -100] for z, y in zip(logits, labels, strict=True)]
            labels = [y[y != -100] for y in labels]
        self._test_buffer.append((batch["id"].detach().cpu(), logits, labels))

    def on_test_epoch_end(self) -> None:
        self._log_metrics(self.test_metrics, "test")
        ids, logits, labels = zip(*self._test_buffer, strict=True)
        if isinstance(logits[0], list):
            self.test_outputs = {
                "ids": torch.cat(ids),
                "logits": [z for b in logits for z in b],
                "labels": [y for b in labels for y in b],
            }
            return
        self.test_outputs = {"ids": torch.cat(ids), "logits": torch.cat(logits), "labels": torch.cat(labels)}

    # ---- optimisation -------------------------------------------------------------------
    def parameter_groups(self) -> list[dict]:
        """AdamW groups: no weight decay on biases and LayerNorm weights."""
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]

    def configure_optimizers(self):
        if self.optimizer_factory is None:
            raise ValueError("No optimizer configured: set model.optimizer (a _partial_ torch.optim class).")
        optimizer = self.optimizer_factory(self.parameter_groups())
        from transformers import get_linear_schedule_with_warmup

        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = get_linear_schedule_with_warmup(optimizer, int(self.warmup_ratio * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class TeacherFinetune(ClassifierModule):
    """Fine-tune ``AutoModelForSequenceClassification`` (or ``...ForTokenClassification`` for
    ``task="ner"``, logits (B, T, C)) from a local HF dir (Devlin et al. 2019).

    Args:
        model_dir: a local HF directory (see :func:`bertcompress.models.resolver.resolve_model`);
            a base encoder gets a freshly initialised classification head.
        label_names: class names in id order; saved into the HF config (``id2label``).
        optimizer: a ``_partial_`` optimizer (AdamW) called with parameter groups.
        warmup_ratio: fraction of the training steps with linear LR warm-up; then linear decay.
        freeze_word_embeddings: keep the input word-embedding matrix fixed (saves most of the
            optimizer state and step time for large-vocabulary models such as multilingual-e5).
        dropout: optional override of the classifier dropout.
        layer_lr_decay: layer-wise learning-rate decay ξ in (0, 1] (None: off). The head and pooler
            train at the optimizer's lr, encoder layer l of L at lr·ξ^(L−l+1) (l = 1..L), the embeddings
            at lr·ξ^(L+1): lower layers, which hold general features, move less (Howard & Ruder 2018,
            arXiv:1801.06146; Sun et al. 2019, "How to Fine-Tune BERT for Text Classification?",
            arXiv:1905.05583; Clark et al. 2020, ELECTRA). Set it with
            ``+teacher.module.layer_lr_decay=0.9`` (absent from the configs, so cached teachers keep their keys).
        pooling: ``cls`` (the model's own head: the pooler on [CLS]) or ``mean`` (masked mean of the last
            hidden states, the pre-training pooling of multilingual-e5;
            :class:`bertcompress.models.mean_pool.MeanPoolBertForSequenceClassification`). Classification
            and BERT-architecture teachers only. ``teacher.module.pooling`` in the teacher config (me5_small: ``mean``).

    Input batches: ``input_ids``/``attention_mask`` (B, T); output logits (B, num_labels).

    Raises:
        ValueError: ``layer_lr_decay`` outside (0, 1], or set with an optimizer that has no ``lr``;
            ``pooling`` not in ``cls``/``mean``, or ``mean`` with task ner or a non-BERT teacher.
    """

    def __init__(
        self,
        model_dir: str | Path,
        label_names: Sequence[str],
        optimizer: Callable | None = None,
        warmup_ratio: float = 0.1,
        freeze_word_embeddings: bool = False,
        dropout: float | None = None,
        task: str = "classification",
        layer_lr_decay: float | None = None,
        pooling: str = "cls",
    ):
        super().__init__(label_names, optimizer, warmup_ratio)
        if layer_lr_decay is not None and not 0.0 < float(layer_lr_decay) <= 1.0:
            raise ValueError(f"teacher.module.layer_lr_decay={layer_lr_decay}: must lie in (0, 1]")
        if pooling not in POOLINGS:
            raise ValueError(f"teacher.module.pooling={pooling!r}: expected one of {POOLINGS}")
        if pooling == "mean" and task != "classification":
            raise ValueError("teacher.module.pooling=mean pools a whole text: classification only, not task=ner")
        self.layer_lr_decay = layer_lr_decay
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(model_dir)
        config.num_labels = self.num_labels
        config.id2label = dict(enumerate(self.label_names))
        config.label2id = {name: i for i, name in enumerate(self.label_names)}
        if dropout is not None:
            config.classifier_dropout = dropout
        existing = getattr(AutoConfig.from_pretrained(model_dir), "id2label", None)
        ignore = existing is None or len(existing) != self.num_labels
        self.task = task
        model_class = auto_model_class(task)
        if pooling == "mean":
            config = mean_pool_config(config)
            model_class = MeanPoolBertForSequenceClassification
        self.model = model_class.from_pretrained(model_dir, config=config, ignore_mismatched_sizes=ignore)
        self.model.train()  # from_pretrained returns eval mode; Lightning keeps a module's mode as found
        if freeze_word_embeddings:
            self.model.get_input_embeddings().weight.requires_grad_(False)

    def forward(self, batch: dict) -> torch.Tensor:
        return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

    def layer_depth(self, name: str) -> int:
        """0 for embeddings, l for encoder layer l-1 (``...layer.<l-1>.``), L+1 for everything above."""
        n_layers = int(self.model.config.num_hidden_layers)
        match = re.search(r"\.layer\.(\d+)\.", name)
        if match:
            return int(match.group(1)) + 1
        return 0 if ".embeddings." in f".{name}" else n_layers + 1

    def parameter_groups(self) -> list[dict]:
        """AdamW groups as in :class:`ClassifierModule`; with ``layer_lr_decay``, one pair of groups per
        depth, each with its own ``lr``."""
        if self.layer_lr_decay is None:
            return super().parameter_groups()
        base_lr = getattr(self.optimizer_factory, "keywords", {}).get("lr")
        if base_lr is None:
            raise ValueError("layer_lr_decay needs the optimizer's lr (a _partial_ optimizer with lr=...)")
        top = int(self.model.config.num_hidden_layers) + 1
        groups: dict[tuple[int, bool], list] = {}
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            no_decay = p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
            groups.setdefault((self.layer_depth(name), no_decay), []).append(p)
        out = []
        for (depth, no_decay), params in sorted(groups.items()):
            group = {"params": params, "lr": float(base_lr) * float(self.layer_lr_decay) ** (top - depth)}
            if no_decay:
                group["weight_decay"] = 0.0
            out.append(group)
        return out

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self(batch)
        loss = nn.functional.cross_entropy(logits.flatten(0, -2), batch["labels"].flatten(), ignore_index=-100)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(logits))
        return loss

    def save_pretrained(self, out_dir: str | Path, tokenizer=None) -> None:
        """Save the HF model (and tokenizer) with ``save_pretrained`` into ``out_dir``."""
        self.model.save_pretrained(out_dir)
        if tokenizer is not None:
            tokenizer.save_pretrained(out_dir)
