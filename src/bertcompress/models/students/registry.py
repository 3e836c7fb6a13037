"""The static-student registry: one decorator registers a builder under the name a config's
``student.model._target_`` ends with, with what it supports. The student builder, the artifact rebuild
(:mod:`bertcompress.artifacts.torch_module`, which never imports a path read from a file) and the task
checks all read it (torchdistill registers its models the same way).

A new static student is one module in this package (its builder decorated) plus one YAML file under
``conf/student/``; every module here is imported on the first lookup, so nothing else needs editing.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class StudentEntry:
    """A registered builder: ``builder(embedding=StaticEmbedding, num_labels=C, **model kwargs) -> nn.Module``
    (batch -> logits (B, C); with ``per_token=True`` (B, T, C)), and whether it tags tokens (``task=ner``)."""

    name: str
    builder: Callable
    supports_ner: bool = False


_REGISTRY: dict[str, StudentEntry] = {}


def register_student(name: str, supports_ner: bool = False) -> Callable:
    """Register the decorated builder as ``name`` (what ``student.model._target_`` ends with).

    Raises:
        ValueError: ``name`` registered twice.
    """

    def wrap(fn: Callable) -> Callable:
        if name in _REGISTRY and _REGISTRY[name].builder is not fn:
            raise ValueError(f"static student {name!r} is registered twice")
        _REGISTRY[name] = StudentEntry(name, fn, supports_ner)
        return fn

    return wrap


def _discover() -> None:
    """Import every module of this package once, so that their builders are registered."""
    import bertcompress.models.students as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")


def registered() -> tuple[str, ...]:
    """The names of every registered static student, sorted."""
    _discover()
    return tuple(sorted(_REGISTRY))


def get_student(target: str, key: str = "student.model._target_") -> StudentEntry:
    """The entry of ``target`` (a builder name, or a dotted path ending with one).

    Raises:
        ValueError: no such registered student (naming ``key`` and the registered ones).
    """
    _discover()
    name = str(target).rsplit(".", 1)[-1]
    if name not in _REGISTRY:
        raise ValueError(f"{key}={target!r}: not a registered static student; registered: {registered()}")
    return _REGISTRY[name]
