"""The report's PNG figures (matplotlib, Agg backend), after Rahman et al. 2025 Figs. 2-4 and 8-10,
plus a per-run confusion matrix and the Pareto front of macro-F1 against CPU latency.

Every function takes the aggregated table (:func:`bertcompress.report.tables.aggregate`), writes one
PNG atomically and returns its path. Horizontal bars keep long run names readable.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import matplotlib

from bertcompress.utils.io import default_file_mode

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

RADAR_METRICS = (
    ("accuracy", "accuracy %"),
    ("precision", "precision %"),
    ("recall", "recall %"),
    ("macro_f1", "macro-F1"),
    ("speedup", "speedup ×"),
    ("compression_ratio", "compression ×"),
)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    os.chmod(tmp, default_file_mode())  # as the report's other files
    os.replace(tmp, path)
    return path


def _height(n: int) -> float:
    return max(2.5, 0.38 * n + 1.2)


def _family(model: str) -> str:
    """``me5_small→cnn+quant`` -> ``me5_small→cnn``: the model before compression."""
    return str(model).split("+")[0]


def pie_rows(agg: pd.DataFrame) -> pd.DataFrame:
    """The rows of the size pie: the distinct models before compression (the baselines and the distilled
    students), largest first; every row with a size when there are fewer than two of those."""
    d = agg.dropna(subset=["size_mb"])
    uncompressed = d[d["compression"].astype(str) == "none"] if "compression" in d else d
    return (uncompressed if len(uncompressed) >= 2 else d).sort_values("size_mb", ascending=False)


def radar_rows(agg: pd.DataFrame, top: int = 6) -> pd.DataFrame:
    """The rows of a radar: best macro-F1 first, at most ``top``; when the rows span several models before
    compression, only the best row of each, so that one student's compressions do not fill the plot."""
    d = agg.dropna(subset=["macro_f1"]).sort_values("macro_f1", ascending=False, kind="stable")
    families = d["model"].map(_family)
    return (d[~families.duplicated()] if families.nunique() > 1 else d).head(top)


def size_pie(agg: pd.DataFrame, path: Path, top: int = 8) -> Path:
    """Model size on disk (MB) as a pie (paper Fig. 2) of :func:`pie_rows`: the ``top`` largest, the rest
    as "others". The compression-ratio chart covers the compressed rows."""
    d = pie_rows(agg)
    sizes = list(d["size_mb"][:top]) + ([d["size_mb"][top:].sum()] if len(d) > top else [])
    names = list(d["model"][:top]) + ([f"{len(d) - top} others"] if len(d) > top else [])
    fig, ax = plt.subplots(figsize=(9, 6))
    if sizes:
        wedges, _ = ax.pie(sizes, startangle=90, counterclock=False, wedgeprops={"linewidth": 1, "edgecolor": "white"})
        ax.legend(
            wedges,
            [f"{n}: {s:.1f} MB" for n, s in zip(names, sizes, strict=True)],
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
            fontsize=8,
        )
    ax.set_title("Model size on disk (MB), before compression")
    return _save(fig, path)


def _barh(
    labels, series: dict, xlabel: str, title: str, path: Path, errors: dict | None = None, ref: float | None = None
):
    n = len(labels)
    fig, ax = plt.subplots(figsize=(9, _height(n * max(1, len(series)) / 1.6)))
    y = np.arange(n)
    h = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        err = None if errors is None else errors.get(name)
        bars = ax.barh(y + i * h - 0.4 + h / 2, values, height=h, xerr=err, label=name, capsize=2)
        ax.bar_label(bars, labels=[f"{v:.2f}" if not pd.isna(v) else "" for v in values], fontsize=7, padding=2)
    if ref is not None:
        ax.axvline(ref, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize=8, loc="lower right")
    ax.margins(x=0.15)
    return _save(fig, path)


def accuracy_bars(agg: pd.DataFrame, path: Path) -> Path:
    """Accuracy and macro-F1 (%) per configuration, ± std over seeds (paper Fig. 3); dashed: the floor."""
    d = agg.dropna(subset=["macro_f1"])
    floor = d["floor_macro_f1"].dropna()
    return _barh(
        list(d["model"]),
        {"accuracy %": d["accuracy"].to_numpy(), "macro-F1": d["macro_f1"].to_numpy()},
        "% on the test set",
        "Accuracy and macro-F1" + (" (dashed: TF-IDF floor macro-F1)" if not floor.empty else ""),
        path,
        errors={"accuracy %": d["accuracy_std"].to_numpy(), "macro-F1": d["macro_f1_std"].to_numpy()},
        ref=float(floor.iloc[0]) if not floor.empty else None,
    )


def _ratio_bars(agg: pd.DataFrame, column: str, label: str, xlabel: str, title: str, path: Path, errors: bool):
    """One bar per configuration of a ratio against the fp32 teacher, largest first; dashed: 1× (no gain)."""
    d = agg.dropna(subset=[column]).sort_values(column, ascending=False)
    err = {label: d[f"{column}_std"].to_numpy()} if errors else None
    return _barh(list(d["model"]), {label: d[column].to_numpy()}, xlabel, title, path, errors=err, ref=1.0)


def speedup_bars(agg: pd.DataFrame, path: Path) -> Path:
    """Batch-1 CPU speedup over the fp32 teacher (paper Fig. 4), ± std over seeds; dashed: 1× (no gain)."""
    xlabel = "speedup × (fp32 teacher latency p50 / model latency p50, same process)"
    return _ratio_bars(agg, "speedup", "speedup", xlabel, "Speedup at batch 1 on CPU", path, errors=True)


def compression_bars(agg: pd.DataFrame, path: Path) -> Path:
    """Compression ratio on disk (fp32 teacher MB / model MB); dashed: 1×."""
    xlabel = "compression ratio × (fp32 teacher size on disk / model size on disk)"
    return _ratio_bars(agg, "compression_ratio", "compression ratio", xlabel, "Compression ratio", path, errors=False)


def radar(agg: pd.DataFrame, path: Path, title: str, top: int = 6) -> Path:
    """The six metrics of paper Figs. 8-10 on one radar: each axis scaled to the best row of the plot
    (so 1.0 = the best value among the plotted rows); the rows are :func:`radar_rows`."""
    d = radar_rows(agg, top)
    if d["model"].map(_family).nunique() > 1 and len(d) < agg["macro_f1"].notna().sum():
        title += " (best macro-F1 per model)"
    keys = [k for k, _ in RADAR_METRICS]
    vals = d[keys].astype(float).fillna(0.0)
    scale = vals.max().replace(0, 1.0)
    angles = np.linspace(0, 2 * math.pi, len(keys), endpoint=False).tolist()
    fig, ax = plt.subplots(figsize=(7.5, 6), subplot_kw={"polar": True})
    for (_, r), (_, v) in zip(d.iterrows(), vals.iterrows(), strict=True):
        pts = (v / scale).tolist()
        ax.plot(angles + angles[:1], pts + pts[:1], linewidth=1.5, label=r["model"])
        ax.fill(angles + angles[:1], pts + pts[:1], alpha=0.08)
    ax.set_xticks(angles, [f"{lab}\n(max {scale[k]:.3g})" for k, lab in RADAR_METRICS], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.tick_params(axis="x", pad=10)
    ax.set_yticklabels([])
    ax.set_title(title, fontsize=10, pad=18)
    ax.legend(loc="upper left", bbox_to_anchor=(1.08, 1.0), fontsize=7)
    return _save(fig, path)


def confusion(matrix, labels, path: Path, title: str) -> Path:
    """A confusion matrix (rows: true class, columns: predicted), counts and row-normalised shading."""
    m = np.asarray(matrix, dtype=float)
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 * len(labels) + 2, 0.9 * len(labels) + 1.5))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(
                j,
                i,
                f"{int(m[i, j])}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def pareto_plot(agg: pd.DataFrame, path: Path) -> Path:
    """Macro-F1 against CPU latency p50 (log scale), bubble area ∝ size on disk (MB); the non-dominated
    runs are joined by the front line, numbered, and listed beside the plot; dashed: the TF-IDF floor."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator

    d = agg.dropna(subset=["macro_f1", "latency_p50_ms"])
    fig, ax = plt.subplots(figsize=(10, 6.5))
    size = pd.to_numeric(d["size_mb"], errors="coerce").fillna(1.0).clip(lower=0.5)
    area = 30 + 900 * np.sqrt(size / size.max())
    # one colour per model before compression (teacher, each student, the floor), so that every bubble
    # can be told apart; the non-dominated ones get a thick red edge and a number
    families = d["model"].map(_family)
    palette = plt.get_cmap("tab10")
    colour = {f: palette(i % 10) for i, f in enumerate(dict.fromkeys(families))}
    ax.scatter(d["latency_p50_ms"], d["macro_f1"], s=area, c=[colour[f] for f in families], alpha=0.5,
               edgecolors=np.where(d["pareto"], "tab:red", "black"), linewidths=np.where(d["pareto"], 2.0, 0.5))  # fmt: skip
    front = d[d["pareto"]].sort_values("latency_p50_ms")
    ax.plot(front["latency_p50_ms"], front["macro_f1"], color="tab:red", linewidth=1, drawstyle="steps-post")
    # number the non-dominated points and list them beside the plot: long names never overlap
    lines = []
    for k, (_, r) in enumerate(front.iterrows(), start=1):
        ax.annotate(str(k), (r["latency_p50_ms"], r["macro_f1"]), xytext=(0, 9), textcoords="offset points",
                    ha="center", fontsize=9, fontweight="bold", color="tab:red")  # fmt: skip
        size_txt = "" if pd.isna(r["size_mb"]) else f", {r['size_mb']:.1f} MB"
        lines.append(f"{k}. {r['model']}\n    {r['macro_f1']:.2f} F1, {r['latency_p50_ms']:.2f} ms{size_txt}")
    if lines:
        ax.text(1.02, 1.0, "Non-dominated (Pareto front):\n" + "\n".join(lines), transform=ax.transAxes,
                va="top", ha="left", fontsize=7.5, family="monospace")  # fmt: skip
    handles = [Line2D([], [], marker="o", linestyle="", markersize=8, color=c, alpha=0.6, label=f)
               for f, c in colour.items()]  # fmt: skip
    floor = d["floor_macro_f1"].dropna()
    if not floor.empty:
        ax.axhline(float(floor.iloc[0]), color="grey", linestyle="--", linewidth=1)
        handles.append(Line2D([], [], color="grey", linestyle="--", label="TF-IDF + LR floor (macro-F1)"))
    # outside the axes, under the front's list: never on top of a bubble
    ax.legend(handles=handles, fontsize=7.5, loc="lower left", bbox_to_anchor=(1.02, 0.0), title="model (colour)",
              title_fontsize=8, frameon=False)  # fmt: skip
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))  # 0.5, 1, 2, 5, 10 ms, not 10^0
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: ""))
    ax.margins(y=0.08)  # room for the numbers above the top points
    ax.set_xlabel("latency p50 at batch 1 on CPU (ms, log scale)")
    ax.set_ylabel("test macro-F1")
    ax.set_title("Pareto front: macro-F1 vs CPU latency (bubble area ∝ size on disk; red edge: non-dominated)")
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)
