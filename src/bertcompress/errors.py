"""How a run reports a mistake in the user's input: the one-line message last, the traceback in the log."""

from __future__ import annotations

from bertcompress.utils.logs import log_traceback_to_files


def user_input_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that report a mistake in the user's input (data, config, a model that cannot be
    had, a damaged artifact): a run shows their one-line message, not a traceback."""
    from omegaconf.errors import OmegaConfBaseException

    from bertcompress.models.resolver import ModelUnavailableError

    return ValueError, FileNotFoundError, ModelUnavailableError, OmegaConfBaseException


def exit_with_message(exc: BaseException) -> SystemExit:
    """A :class:`SystemExit` (status 1) whose text, printed last, is the error's one line; the traceback
    goes to the run's log file."""
    line = f"{type(exc).__name__}: {exc}"
    log_traceback_to_files(exc, line)
    return SystemExit(f"Error: {line}")
