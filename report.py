"""Turn a sweep into tables and figures: `python report.py <sweep or runs dir> [--out DIR]`."""

import sys

from bertcompress.cli import report

if __name__ == "__main__":
    sys.exit(report())
