"""The task families and the transformers head class of each: importable without Lightning, so that
loading an artifact (``bertcompress.artifacts``) never imports the training loops."""

from __future__ import annotations

TASKS = ("classification", "ner")


def auto_model_class(task: str):
    """``AutoModelForSequenceClassification`` (classification) or ``AutoModelForTokenClassification`` (ner).

    Raises:
        ValueError: for another task name.
    """
    import transformers

    if task not in TASKS:
        raise ValueError(f"task={task!r}: expected one of {TASKS}")
    return (
        transformers.AutoModelForTokenClassification
        if task == "ner"
        else transformers.AutoModelForSequenceClassification
    )
