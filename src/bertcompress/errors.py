"""How a run reports a mistake in the user's input: the one-line message last, the traceback in the log."""

from __future__ import annotations

from bertcompress.utils.logs import log_traceback_to_files


def user_input_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that report a mistake in the user's input (data, config, a model that cannot be
    had, a damaged artifact): a run shows their one-line message, not a traceback."""
    from omegaconf.errors import OmegaConfBaseException

    from bertcompress.models.resolver import ModelUnavailableError
    from bertcompress.utils.cache import CacheEntryError

    return ValueError, FileNotFoundError, ModelUnavailableError, OmegaConfBaseException, CacheEntryError


def exit_with_message(exc: BaseException) -> SystemExit:
    """A :class:`SystemExit` (status 1) whose text, printed last, is the error's one line; the traceback
    goes to the run's log file."""
    line = f"{type(exc).__name__}: {exc}"
    log_traceback_to_files(exc, line)
    return SystemExit(f"Error: {line}")


def disk_full(exc: BaseException) -> OSError | None:
    """A one-line error for a full disk anywhere in ``exc``'s chain (an ``OSError`` ENOSPC, or a library's
    own error about it, e.g. safetensors' ``SafetensorError``), else None. Writes are atomic, so nothing
    half-written is left behind."""
    import errno

    seen = exc
    while seen is not None:
        if (isinstance(seen, OSError) and seen.errno == errno.ENOSPC) or "No space left on device" in str(seen):
            return OSError(
                errno.ENOSPC,
                f"no space left on device ({type(seen).__name__}: {' '.join(str(seen).split())[:300]}); free disk "
                "space or point paths.cache_dir / paths.log_dir at another disk, then run again (nothing half-written "
                "was kept)",
            )
        seen = seen.__cause__ or seen.__context__
    return None
