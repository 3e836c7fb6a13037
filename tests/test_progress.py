"""Progress and log lines a log file can follow: a plain line at an interval off a terminal, Lightning's
lines once, no ANSI codes in files."""

from __future__ import annotations

import io
import logging

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar

from bertcompress.utils.progress import PlainProgress, progress_bar


class _TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch[0]).pow(2).mean()
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_the_rich_bar_only_on_a_terminal():
    assert isinstance(progress_bar(stream=_TTY()), RichProgressBar)
    plain = progress_bar(interval_s=5, stream=io.StringIO())
    assert isinstance(plain, PlainProgress) and plain.interval_s == 5


def test_off_a_terminal_a_fit_logs_steps_elapsed_eta_and_loss(caplog, tmp_path):
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(24, 4)), batch_size=4)
    trainer = L.Trainer(
        max_epochs=2, callbacks=[PlainProgress(interval_s=0)], logger=False, enable_checkpointing=False,
        enable_model_summary=False, default_root_dir=tmp_path, log_every_n_steps=1,
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="bertcompress.utils.progress"):
        trainer.fit(_Tiny(), data)
    lines = [r.getMessage() for r in caplog.records if r.name == "bertcompress.utils.progress"]
    assert lines[0].startswith("_Tiny: step 1/12 (8%), epoch 1/2, elapsed ")
    assert "ETA " in lines[0] and "loss " in lines[0]
    assert any(line.startswith("_Tiny: step 12/12 (100%), epoch 2/2") for line in lines)
    assert sum("(epoch done)" in line for line in lines) == 2


def test_lightning_lines_once_and_no_ansi_in_a_log_file(tmp_path, monkeypatch):
    from bertcompress.utils.logs import tidy_run_logging

    root = logging.getLogger()
    file_handler = logging.FileHandler(tmp_path / "job.log")
    monkeypatch.setattr(root, "handlers", [file_handler])
    lightning_logger = logging.getLogger("lightning")
    monkeypatch.setattr(lightning_logger, "handlers", list(lightning_logger.handlers))
    monkeypatch.setattr(lightning_logger, "propagate", lightning_logger.propagate)
    stream, redirected = io.StringIO(), io.StringIO()
    lightning_logger.addHandler(logging.StreamHandler(stream))  # Lightning's own console handler
    monkeypatch.setattr(logging.getLogger("transformers"), "handlers", [logging.StreamHandler(redirected)])
    tidy_run_logging()
    logging.getLogger("lightning.pytorch.utilities.rank_zero").warning("GPU available: False")
    logging.getLogger("transformers.modeling_utils").warning("\x1b[1mBertModel LOAD REPORT\x1b[0m from: x")
    file_handler.close()
    assert stream.getvalue() == ""  # not printed a second time by Lightning's handler
    text = (tmp_path / "job.log").read_text()
    assert text.count("GPU available: False") == 1
    assert "\x1b[" not in text
    assert "BertModel LOAD REPORT from: x" in redirected.getvalue() and "\x1b[" not in redirected.getvalue()
