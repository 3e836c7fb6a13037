"""One place for the third-party log lines that tell a user nothing, filtered by logger (or warning
module) and message, and for how a run reports an error in the user's input.

Only the exact lines listed in :data:`NOISE` and :data:`WARNINGS` are dropped; nothing of this
project's own logging or warnings is ever filtered.
"""

from __future__ import annotations

import logging
import re
import warnings

# (logger name, message pattern): dropped at that logger
NOISE: tuple[tuple[str, str], ...] = (
    # torchao's optional CUDA/CUTLASS kernels that a CPU build does not ship, and its Triton probe
    ("torchao", r"^Failed to load .*torchao/_C_(mxfp8|cutlass_90a)"),
    ("torchao.kernel.intmm", r"Detected no triton"),
    # torchao registers Enum subclasses that torch now supports natively
    ("torch.utils._pytree", r"is an Enum subclass and is now natively supported"),
    # Lightning's adverts for litlogger / litmodels
    ("lightning.pytorch.utilities.rank_zero", r"^💡 Tip: For seamless cloud"),
    # ONNX Runtime's advice to run its shape-inference pre-processing before quantizing
    ("root", r"consider (to run )?pre-processing before quantization"),
)
# (warning module regex, message regex): warnings raised by libraries inside other libraries
WARNINGS: tuple[tuple[str, str], ...] = (
    (r"lightning\.pytorch\.utilities\._pytree", r".*isinstance\(treespec, LeafSpec\)` is deprecated"),
    # torch.onnx's TorchScript exporter (dynamo=False, which ONNX Runtime int8 needs), chosen on purpose, and
    # what it says while tracing a BiLSTM or a transformer with fixed-shape inputs
    (r"bertcompress\.", r"You are using the legacy TorchScript-based ONNX export"),
    (r"torch\.onnx\.", r"Exporting a model to ONNX with a batch_size other than 1, with a variable length with LSTM"),
    (r"torch\.onnx\.", r"Exporting aten::index operator of advanced indexing"),
    (r"torch\.onnx\.", r"The feature will be removed\. Please remove usage of this function"),
    (r"(torch\.nn\.utils\.rnn|transformers\.)", r"Converting a tensor to a Python boolean might cause the trace"),
)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# a transformers load report is noise when every key it lists is an UNEXPECTED classification-head key:
# a classifier's encoder loaded without its head on purpose (the static students' embeddings)
_HEAD_REPORT = re.compile(r"LOAD REPORT")
_HEAD_KEY = re.compile(r"^(classifier|pooler|score|qa_outputs|lm_head|cls)\b[\w.]*$")


class _Drop(logging.Filter):
    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


class _HeadOnlyLoadReport(logging.Filter):
    """Drop a transformers LOAD REPORT whose rows are all UNEXPECTED classification-head keys."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not _HEAD_REPORT.search(message):
            return True
        plain = _ANSI.sub("", message)
        rows = [m.groups() for m in re.finditer(r"^\s*([\w.]+)\s*\|\s*([A-Z]+)\s*\|", plain, re.M)]
        rows = [(k, status) for k, status in rows if k.lower() != "key"]
        return not rows or not all(status == "UNEXPECTED" and _HEAD_KEY.match(k) for k, status in rows)


_installed = False


def quiet_known_noise() -> None:
    """Install the filters (idempotent); called when ``bertcompress`` is imported."""
    global _installed
    if _installed:
        return
    _installed = True
    for name, pattern in NOISE:
        logging.getLogger(None if name == "root" else name).addFilter(_Drop(pattern))
    logging.getLogger("transformers.modeling_utils").addFilter(_HeadOnlyLoadReport())
    for module, message in WARNINGS:
        warnings.filterwarnings("ignore", message=message, module=module)


class _StripAnsi(logging.Filter):
    """Remove ANSI colour codes (transformers' LOAD REPORT) from records a log file gets."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "\x1b[" in message:
            record.msg, record.args = _ANSI.sub("", message), None
        return True


def tidy_run_logging() -> None:
    """Once Hydra has configured the root logger: Lightning's lines once (its own console handler, which
    would print each line a second time beside the root's, is removed; they propagate to the root), and no
    ANSI codes in file handlers or redirected streams (the root's and transformers' own), and no tqdm bars
    off a terminal. Idempotent."""
    root = logging.getLogger()
    if not root.handlers:
        return
    import sys

    if not sys.stderr.isatty():  # tqdm bars ("Loading weights: 100%|███") are one line per update in a file
        import datasets
        import transformers

        transformers.utils.logging.disable_progress_bar()
        datasets.disable_progress_bars()
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        lg = logging.getLogger(name)
        for h in [h for h in lg.handlers if type(h) is logging.StreamHandler]:
            lg.removeHandler(h)
        lg.propagate = True
    for h in [*root.handlers, *logging.getLogger("transformers").handlers]:  # transformers prints on its own
        stream = getattr(h, "stream", None)
        to_file = isinstance(h, logging.FileHandler) or not getattr(stream, "isatty", lambda: False)()
        if to_file and not any(isinstance(f, _StripAnsi) for f in h.filters):
            h.addFilter(_StripAnsi())


def log_traceback_to_files(exc: BaseException, message: str) -> None:
    """Write ``message`` and the traceback of ``exc`` to the file handlers of the root logger only (the
    run's log file), so that the console shows the one-line error and the log keeps the details."""
    record = logging.LogRecord(
        "bertcompress", logging.ERROR, __file__, 0, message, None, (type(exc), exc, exc.__traceback__)
    )
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
