"""General distillation (TinyBERT's first stage, Jiao et al. 2020, arXiv:1909.10351; MiniLM, Wang et al.
2020): before task distillation, a truncated student learns the teacher's hidden states and attention on
unlabeled text, with no labels, and the result is cached as the student's initialisation
(``student_inits`` entries, keyed by teacher, texts, layers, vocabulary and recipe)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file, save_file

from bertcompress.data.augment import read_unlabeled
from bertcompress.data.encoding import PadCollator
from bertcompress.data.hf_io import encode_dataset
from bertcompress.distill.feature_module import feature_losses, use_eager_attention
from bertcompress.distill.features import feature_terms
from bertcompress.stages.teacher import TeacherResult
from bertcompress.utils.cache import load_or_build
from bertcompress.utils.io import stable_hash
from bertcompress.utils.progress import progress_bar
from bertcompress.utils.seeding import seed_stage

log = logging.getLogger(__name__)
WEIGHTS = "student.safetensors"
DEFAULT_TERMS = {  # TinyBERT's general distillation: hidden states and attention of uniformly mapped layers
    "hidden": {"_target_": "bertcompress.distill.features.HiddenStateMSE", "weight": 1.0},
    "attn": {"_target_": "bertcompress.distill.features.AttentionLoss", "weight": 1.0, "mode": "kl"},
}


class GeneralDistill(L.LightningModule):
    """Feature terms only, between ``student`` (an HF model) and ``teacher``, on unlabeled batches."""

    def __init__(self, student, teacher, terms: dict, teacher_ids: torch.Tensor | None, lr: float):
        super().__init__()
        self.student, self.terms, self.lr = student, torch.nn.ModuleDict(terms), lr
        self._teacher = [teacher.eval().requires_grad_(False)]
        self.teacher_ids = teacher_ids
        use_eager_attention(student, list(terms.values()))
        use_eager_attention(teacher, list(terms.values()))

    def on_fit_start(self) -> None:
        self._teacher[0].to(self.device)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        _, values, _ = feature_losses(self.student, self._teacher[0], self.teacher_ids, self.terms, ids, mask)
        total = ids.new_zeros((), dtype=torch.float32)
        for name, value in values.items():
            total = total + self.terms[name].weight * value
            self.log(f"general_kd/loss_{name}", value, batch_size=len(ids))
        self.log("general_kd/loss", total, prog_bar=True, batch_size=len(ids))
        return total

    def configure_optimizers(self):
        return torch.optim.AdamW([p for p in self.parameters() if p.requires_grad], lr=self.lr)


def general_texts(g: DictConfig, dm) -> list[str]:
    """The unlabeled texts: the training split's (``train: true``) and those of ``files`` (each one text per
    line or a table with a ``text`` column, e.g. the unlabeled pools), the first ``max_texts`` of a seeded shuffle.
    """
    import random

    texts = list(dm.texts("train")) if g.get("train", True) else []
    for i, f in enumerate(g.get("files") or []):
        texts += read_unlabeled(f, key=f"student.general_distillation.files[{i}]")
    random.Random(int(g.get("seed", 0))).shuffle(texts)
    return texts[: g.max_texts] if g.get("max_texts") else texts


def general_distillation(cfg: DictConfig, bundle, teacher: TeacherResult, dm, loggers: list) -> dict | None:
    """Run (or load from the cache) ``student.general_distillation`` on ``bundle.module`` (a truncated
    student), in place; returns its results block, or None when it is not configured.

    Raises:
        ValueError: a student that is not a truncated teacher, or terms that do not fit (naming the key).
    """
    g = OmegaConf.select(cfg, "student.general_distillation")
    if not g:
        return None
    if cfg.student.kind != "truncated":
        raise ValueError(f"student.general_distillation needs a truncated teacher (student={cfg.student.name})")
    spec = OmegaConf.to_container(g, resolve=True)
    texts = general_texts(g, dm)
    student, teacher_model = bundle.module.model, teacher.module.model
    kept = getattr(bundle.module, "teacher_token_ids", None)
    key = {
        "teacher": teacher.cache_dir.name,
        "texts": stable_hash(texts),
        "n_texts": len(texts),
        "layers": bundle.info.get("layers"),
        "vocabulary": stable_hash(kept) if kept is not None else "teacher",
        "max_length": bundle.encoder.max_length,
        "recipe": {k: v for k, v in spec.items() if k not in {"files"}},
        "seed": cfg.seed,
    }

    def build(tmp: Path) -> dict:
        seed_stage(cfg.seed, "student/general_kd")
        terms = feature_terms(g.get("terms") or DEFAULT_TERMS, student.config, teacher_model.config)
        ids = torch.tensor(kept, dtype=torch.long) if kept is not None else None
        module = GeneralDistill(student, teacher_model, terms, ids, float(g.get("lr", 1e-4)))
        tokens = Path(cfg.paths.cache_dir) / "tokens"  # the pools, tokenized once (Dataset.map, by content)
        encoded = encode_dataset(range(len(texts)), texts, [0] * len(texts), bundle.encoder, tokens)
        loader = torch.utils.data.DataLoader(
            encoded,
            batch_size=int(g.get("batch_size", 32)),
            shuffle=True,
            collate_fn=PadCollator(bundle.encoder.tokenizer),
        )
        trainer = hydra.utils.instantiate(
            cfg.trainer, max_epochs=int(g.get("epochs", 1)), callbacks=[progress_bar()], logger=loggers or False,
            enable_checkpointing=False, limit_val_batches=0,
        )  # fmt: skip
        start = time.perf_counter()
        trainer.fit(module, train_dataloaders=loader)
        save_file({k: v.contiguous() for k, v in student.state_dict().items()}, str(tmp / WEIGHTS))
        return {"n_texts": len(texts), "train_time_s": time.perf_counter() - start, "epochs": int(g.get("epochs", 1))}

    def load(path: Path) -> None:
        student.load_state_dict(load_file(str(path / WEIGHTS)))

    _, use = load_or_build(cfg.paths.cache_dir, "student_inits", cfg.student.name, key, build, load)
    from bertcompress.utils.cache import cache_meta

    meta = cache_meta(use.path)
    log.info("General distillation on %d texts: %s (%s)", len(texts), use.path, "cached" if use.cache_hit else "built")
    return {**meta, "cache_hit": use.cache_hit, "cache_dir": use.path, "key": key}
