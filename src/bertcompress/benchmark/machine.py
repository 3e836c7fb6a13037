"""Describe the machine a figure was measured on: CPU model and flags, threads, library versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform

from bertcompress_runtime.machine import cpu_model_and_flags


def load_average_1min() -> float | None:
    """The 1-minute load average (runnable processes), rounded to 0.01; None where the OS has none."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def machine_info() -> dict:
    """CPU model, SIMD flags (AVX2/AVX-512/VNNI/BF16/AMX), core and torch thread counts, versions, GPU."""
    import torch

    model, simd = cpu_model_and_flags()
    versions = {}
    for pkg in ("torch", "transformers", "lightning", "onnxruntime", "torchao"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    info = {
        "cpu": model,
        "cpu_flags": simd,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    load = load_average_1min()
    if load is not None:
        # 1-min load average when the figures were taken: above the core count, other processes competed
        # for the cores and the latencies (the ratios too, when thread pools were starved) are suspect
        info["load_avg_1min"] = load
        info["busy"] = load > (os.cpu_count() or 1) + 0.5
    return info
