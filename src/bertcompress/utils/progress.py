"""Progress that a log file can follow: Lightning's Rich bar on a terminal, else a plain line at a fixed
interval (steps done/total, elapsed, ETA, loss), so that a long fit under ``nohup`` or SLURM shows where
it is while it runs (a Rich bar redirected to a file prints once, at the end)."""

from __future__ import annotations

import logging
import sys
import time

from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.callbacks.progress import ProgressBar

log = logging.getLogger(__name__)


def _hms(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m{rest % 60:02d}s" if h else f"{rest // 60}m{rest % 60:02d}s"


class PlainProgress(ProgressBar):
    """One log line every ``interval_s`` seconds of a fit (and one at each epoch's end): ``train: step
    120/860 (14%), epoch 1/3, elapsed 3m12s, ETA 19m40s, loss 1.2345``. A Lightning progress bar, so the
    Trainer adds no other; nothing is printed outside fits."""

    def __init__(self, interval_s: float = 30.0):
        super().__init__()
        self.interval_s = float(interval_s)
        self._enabled = True
        self._start = self._last = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = self._last = time.monotonic()

    def line(self, trainer, pl_module) -> str:
        """The progress line of the fit now."""
        done, total = int(trainer.global_step), int(trainer.estimated_stepping_batches or 0)
        elapsed = time.monotonic() - self._start
        parts = [f"step {done}/{total}" + (f" ({100 * done / total:.0f}%)" if total else "")]
        parts.append(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")
        parts.append(f"elapsed {_hms(elapsed)}")
        if total and done:
            parts.append(f"ETA {_hms(elapsed / done * (total - done))}")
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None:
            parts.append(f"loss {float(loss):.4f}")
        return f"{type(pl_module).__name__}: " + ", ".join(parts)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.monotonic()
        if self._enabled and trainer.is_global_zero and now - self._last >= self.interval_s:
            self._last = now
            log.info(self.line(trainer, pl_module))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._enabled and trainer.is_global_zero:
            self._last = time.monotonic()
            log.info(self.line(trainer, pl_module) + " (epoch done)")


def progress_bar(interval_s: float = 30.0, stream=None) -> ProgressBar:
    """Lightning's :class:`RichProgressBar` when ``stream`` (default stderr) is a terminal, else a
    :class:`PlainProgress` printing every ``interval_s`` seconds."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return RichProgressBar() if isatty is not None and isatty() else PlainProgress(interval_s)
