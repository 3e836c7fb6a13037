"""One check of a job's config before anything runs: :func:`bertcompress.pipeline.run` calls it before any
training, and the sweep preflight calls it on every job before the first one starts. Each choice that is
dispatched by name later (``student.kind``, ``soft_targets``, ``class_bias``, ``embedding.source``, a
member's ``kind``, the loss and its feature terms, the compression steps, the task) is checked here, with a
message that names the key and the values it takes."""

from __future__ import annotations

from omegaconf import DictConfig

SOFT_TARGETS = ("black_box", "online")
EMBEDDING_SOURCES = ("teacher", "fasttext")
MEMBER_KINDS = ("transformer", "tfidf_lr")


def _one_of(key: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{key}={value!r}: expected one of {list(allowed)}")


def _student(s: DictConfig, task: str) -> None:
    from bertcompress.distill.losses import intermediate_epochs, loss_from_config
    from bertcompress.models.student_builder import KINDS, check_ner_student

    _one_of("student.kind", s.get("kind"), KINDS)
    loss_from_config(s.loss)  # T > 0, alpha in [0, 1], the mode
    intermediate_epochs(s.loss)
    _one_of("student.soft_targets", s.get("soft_targets", "black_box"), SOFT_TARGETS)
    _one_of("student.class_bias", s.get("class_bias"), (None, "tune"))
    if s.kind == "static":
        _one_of("student.embedding.source", (s.get("embedding") or {}).get("source", "teacher"), EMBEDDING_SOURCES)
    if (s.get("loss") or {}).get("terms") and s.kind != "truncated":
        raise ValueError(
            f"student.loss.terms (student={s.name}, kind={s.kind}): intermediate-layer terms need a student that "
            "reads the teacher's tokens (student=teacher_truncated or teacher_6l); drop the terms for this student"
        )
    if task == "ner":
        if s.get("soft_targets", "black_box") == "online":
            raise ValueError("student.soft_targets=online is for text classification; task=ner uses black_box")
        if s.get("class_bias") is not None:
            raise ValueError("student.class_bias=tune is for text classification; task=ner: set it to null")
        check_ner_student(s)


def validate(cfg: DictConfig) -> None:
    """Raise ``ValueError`` (naming the key) for the first choice of ``cfg`` that a later stage would refuse.

    Raises:
        ValueError: an unknown student kind, soft-target mode, class-bias or embedding setting, a bad loss
            (T, alpha, feature terms on a student that cannot take them), an unknown ensemble member kind, a
            bad compression step, or a choice that ``task=ner`` does not support.
    """
    from bertcompress.compression.apply import validate_compression
    from bertcompress.compression.auto import is_search
    from bertcompress.utils.distributed import world_size

    task = (cfg.get("task") or {}).get("name", "classification")
    if cfg.student.get("name", "none") != "none":
        _student(cfg.student, task)
    for name, member in (cfg.teacher.get("members") or {}).items():
        _one_of(f"teacher.members.{name}.kind", member.get("kind", "transformer"), MEMBER_KINDS)
    if task == "ner" and (cfg.teacher.get("members") or (cfg.get("augment") or {}).get("enabled")):
        raise ValueError("task=ner: multi-teacher ensembles and augmented transfer sets are for classification")
    validate_compression(cfg.compression)
    if is_search(cfg.compression) and "trainer" in cfg and world_size(cfg) > 1:
        raise ValueError(
            "compression=auto searches (and may fall back to QAT) in one process: run it without DDP "
            "(hardware=cpu or hardware=p100); DDP can train the student, and a second job reuses it from the cache"
        )
