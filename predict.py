"""Classify text with any saved artifact: `python predict.py <run dir>/artifact "টেক্সট"` (or a file / stdin)."""

import sys

from bertcompress.cli import predict

if __name__ == "__main__":
    sys.exit(predict())
