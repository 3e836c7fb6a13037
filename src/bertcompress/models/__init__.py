"""Teachers, students and their builders. Importing the package registers the mean-pooling BERT
classifier (``model_type: bert_mean_pool``) with the ``transformers`` Auto classes, so that every
``AutoConfig``/``AutoModelForSequenceClassification.from_pretrained`` of a saved one finds it."""

from bertcompress.models import mean_pool  # noqa: F401
