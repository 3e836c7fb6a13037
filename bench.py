"""Benchmark an artifact: `python bench.py <artifact> --reference <teacher artifact> --data test.csv`."""

import sys

from bertcompress.cli import bench

if __name__ == "__main__":
    sys.exit(bench())
