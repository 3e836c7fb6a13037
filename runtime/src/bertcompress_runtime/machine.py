"""The CPU a figure is measured on, read once for both installs (the training package's
``bertcompress.benchmark.machine`` and ``bertcompress-bench``): its model name and the SIMD flags that decide
int8 and bf16 speed. No torch."""

from __future__ import annotations

import platform
from pathlib import Path

# reported flag -> /proc/cpuinfo flag
SIMD_FLAGS = {
    "avx2": "avx2",
    "avx512f": "avx512f",
    "avx512_vnni": "avx512_vnni",
    "avx_vnni": "avx_vnni",
    "avx512_bf16": "avx512_bf16",
    "amx": "amx_tile",
}


def cpu_model_and_flags() -> tuple[str, dict[str, bool]]:
    """``(model name, {flag: present})`` for :data:`SIMD_FLAGS`, from /proc/cpuinfo (elsewhere: the platform's
    processor name and no flag)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and ":" in line:
                flags = set(line.split(":", 1)[1].split())
            if flags and model:
                break
    except OSError:
        pass
    return model, {name: flag in flags for name, flag in SIMD_FLAGS.items()}
