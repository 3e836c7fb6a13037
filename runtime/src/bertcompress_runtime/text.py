"""Text normalizers applied before tokenization (named by an artifact's ``text_normalizer``)."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable


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
