"""The torch-free runtime against the torch path, on the same artifacts:

    python scripts/bench_runtime.py --venv /opt/bc ARTIFACT [ARTIFACT ...] --data-dir ../shared/data

For each artifact: cold start (a new process: interpreter start, imports, load, first prediction; the
median of ``--repeats`` runs of ``bertcompress-predict`` in the runtime venv, and of ``predict.py`` in this
install), and batch-1 p50 of both loaders in this process, interleaved in rounds on UBMEC test texts.
Prints what it measured, the venv's size on disk and the machine's load.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from bertcompress_runtime.timing import interleaved_latency

from bertcompress.utils.io import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
TEXT = "আমি আজ খুব খুশি"


def cold_start(cmd: list[str], repeats: int) -> float:
    """Median wall seconds of ``cmd`` run ``repeats`` times (the first, warming the page cache, dropped)."""
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifacts", nargs="+")
    parser.add_argument("--venv", required=True, help="a venv made by `make runtime-venv`")
    parser.add_argument("--data-dir", default=os.environ.get("BERTCOMPRESS_DATA_DIR", "../shared/data"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    import pandas as pd
    import torch
    from bertcompress_runtime import load

    from bertcompress.artifacts import load_artifact

    torch.set_num_threads(args.threads)
    texts = (
        pd.read_excel(Path(args.data_dir) / "ubmec" / "ubmec.xlsx").iloc[:, 0].astype(str).tolist()[-args.per_round :]
    )
    venv_mb = sum(f.stat().st_size for f in Path(args.venv).rglob("*") if f.is_file() and not f.is_symlink()) / 1e6
    out = {
        "venv": args.venv,
        "venv_mb": venv_mb,
        "threads": args.threads,
        "load_before": os.getloadavg()[0],
        "rows": {},
    }
    for art in args.artifacts:
        row = {
            "cold_start_runtime_s": cold_start([f"{args.venv}/bin/bertcompress-predict", art, TEXT], args.repeats),
            "cold_start_torch_s": cold_start([sys.executable, str(ROOT / "predict.py"), art, TEXT], args.repeats),
        }
        rt, tp = load(art, threads=args.threads), load_artifact(art, threads=args.threads)
        singles = {"runtime": rt.batches(texts, 1), "torch": tp.batches(texts, 1)}
        models = {"runtime": rt, "torch": tp}
        # the one timing loop: 5 warm-up calls, then each round of texts a block, model after model
        rounds = {k: v[:5] + v * args.rounds for k, v in singles.items()}
        timed = interleaved_latency([m.logits for m in models.values()], list(rounds.values()), 5, len(texts))
        lat = dict(zip(models, timed, strict=True))
        agree = float((rt.predict_proba(texts).argmax(1) == tp.predict_proba(texts).argmax(1)).mean())
        row |= {f"p50_{k}_ms": float(np.percentile(v, 50)) for k, v in lat.items()}
        row["agreement"] = agree
        out["rows"][art] = row
        print(
            f"{art}: cold start {row['cold_start_runtime_s']:.2f} s (runtime venv) vs {row['cold_start_torch_s']:.2f} s "
            f"(predict.py, training install); batch-1 p50 {row['p50_runtime_ms']:.2f} ms (runtime) vs "
            f"{row['p50_torch_ms']:.2f} ms (torch path); argmax agreement {agree:.3f}"
        )
    out["load_after"] = os.getloadavg()[0]
    print(
        f"runtime venv {args.venv}: {venv_mb:.0f} MB on disk; load {out['load_before']:.2f} -> {out['load_after']:.2f}; "
        f"{os.cpu_count()} cores, {args.threads} threads"
    )
    if args.out:
        atomic_write_json(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
