"""Per-stage seeds: each stage (teacher fine-tune, distillation, compression) re-seeds every RNG at its start.

A stage's random draws (head init, dropout, data order, calibration batches) then depend only on the
run seed and the stage's name, never on what ran before it in the same process: a cold cache (an
offline model converted, teacher logits computed) and a warm one (both read from disk) give the same
result. This follows Lightning's ``seed_everything`` (``PYTHONHASHSEED``, ``random``, numpy, torch).
"""

from __future__ import annotations

import hashlib

import lightning as L

# the seeding scheme: part of the teacher and student cache keys, so weights trained under another scheme
# (one global seed at start-up, whose later draws depended on the cache state) are never reused
SCHEME = "per-stage-v1"

_MAX_SEED = 2**32 - 1


def stage_seed(seed: int, stage: str) -> int:
    """A seed in [0, 2^32) for ``stage`` (e.g. ``"teacher/init"``), derived from the run seed by sha256."""
    digest = hashlib.sha256(f"{int(seed)}:{stage}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % _MAX_SEED


def seed_stage(seed: int, stage: str) -> int:
    """Seed ``random``, numpy and torch (and dataloader workers) for ``stage``; returns the derived seed."""
    derived = stage_seed(seed, stage)
    L.seed_everything(derived, workers=True, verbose=False)
    return derived


class SeedEachEpoch(L.Callback):
    """Re-seed every RNG at the start of each training epoch from (run seed, stage, epoch): the dropout of
    epoch k does not depend on what ran before it, so a fit resumed from the checkpoint of epoch k-1 draws
    what the uninterrupted fit drew. (The train loader's sampler seeds the data order per epoch:
    :class:`bertcompress.data.encoding.EpochShuffleSampler`.)"""

    def __init__(self, seed: int, stage: str):
        self.seed, self.stage = int(seed), stage

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seed_stage(self.seed, f"{self.stage}/epoch{trainer.current_epoch}")
