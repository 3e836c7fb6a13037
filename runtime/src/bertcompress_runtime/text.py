"""Text normalizers applied before tokenization (named by an artifact's ``text_normalizer``), and the
checked reading of a one-text-per-line file."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from pathlib import Path


def read_text_lines(path: str | Path, label: str) -> list[str]:
    """The non-blank lines of a UTF-8 text file (one text per line).

    Args:
        label: what names the file in the errors, e.g. ``--file texts.txt``.

    Raises:
        ValueError: a file that cannot be read, bytes that are not UTF-8 (naming the byte and line), or
            NUL bytes (a binary file).
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"{label}: cannot be read ({e.strerror}); give a text file, one text per line") from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ValueError(
            f"{label}: byte {e.start} (line {line}) is not UTF-8 text ({raw[e.start : e.start + 4]!r}); give a "
            "UTF-8 file, one text per line"
        ) from e
    if "\x00" in text:
        raise ValueError(f"{label}: holds NUL bytes (a binary file?); give a UTF-8 file, one text per line")
    return [line for line in text.splitlines() if line.strip()]


def get_text_normalizer(name: str | None) -> Callable[[str], str] | None:
    """Return a ``str -> str`` normalizer by name.

    Names:
        ``None`` / ``"none"``: no normalization.
        ``"nfc"``: Unicode NFC.
        ``"csebuetnlp"``: the normalizer BanglaBERT was pre-trained with (PyPI
            ``csebuetnlp-normalizer``; https://github.com/csebuetnlp/normalizer).

    Raises:
        ImportError: for ``csebuetnlp`` when the package is missing, saying how to install it.
        ValueError: for an unknown name.
    """
    if name in (None, "none"):
        return None
    if name == "nfc":
        return lambda text: unicodedata.normalize("NFC", text)
    if name == "csebuetnlp":
        try:
            from normalizer import normalize
        except ImportError as e:
            raise ImportError(
                "text_normalizer=csebuetnlp needs the BanglaBERT normalizer: pip install csebuetnlp-normalizer "
                "(or bertcompress-runtime[bangla])"
            ) from e
        return normalize
    raise ValueError(f"Unknown text normalizer {name!r}; expected one of: none, nfc, csebuetnlp")
