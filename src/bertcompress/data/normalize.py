"""Text normalizers that some teachers require before tokenization: defined once in
:mod:`bertcompress_runtime.text` (an artifact's ``text_normalizer`` must mean the same in both)."""

from bertcompress_runtime.text import get_text_normalizer

__all__ = ["get_text_normalizer"]
