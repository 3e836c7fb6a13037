"""``python report.py <sweep or runs dir>``: every results.json under the dir -> ``<dir>/report/``.

Writes (each file atomically):
- ``summary.csv``: one row per configuration, mean and std over seeds, with ``table``, ``below_floor``
  and ``pareto`` columns; ``runs.csv``: one row per run (failed ones included);
- ``summary.md``: the paper's tables (Rahman et al. 2025, Tables 4-7) with the floor flagged;
- PNGs: ``sizes.png``, ``accuracy_f1.png``, ``speedup.png``, ``compression_ratio.png``,
  ``radar_<table>.png``, ``pareto.png`` and ``confusion/<model>.png`` per configuration;
- ``index.html``: one self-contained page (images inlined) with the tables and figures.
"""

from __future__ import annotations

import base64
import html
import logging
import re
from pathlib import Path

import pandas as pd

from bertcompress.report import figures
from bertcompress.report.collect import TABLES, load_runs
from bertcompress.report.tables import aggregate, cache_summary, display_table, pareto_table, summary_markdown
from bertcompress.utils.io import atomic_write_text

log = logging.getLogger(__name__)
RUN_COLUMNS = (
    "run_dir", "status", "error", "model", "teacher", "student", "compression", "kd", "seed", "data", "accuracy",
    "macro_f1", "precision", "recall", "retention", "speedup", "compression_ratio", "params", "size_mb",
    "latency_p50_ms", "latency_p95_ms", "throughput_seq_s", "teacher_cache_hit", "logit_cache_hit", "wall_time_s",
)  # fmt: skip


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name.replace("→", "-to-")).strip("_")[:120]


def make_report(root: str | Path, out_dir: str | Path | None = None) -> dict:
    """Aggregate ``root`` and write the report; returns ``{"dir", "files", "summary"}`` (summary: the aggregate).

    Raises:
        FileNotFoundError: when ``root`` holds no results.json.
    """
    root = Path(root)
    out = Path(out_dir) if out_dir else root / "report"
    runs = load_runs(root)  # before creating anything under root
    out.mkdir(parents=True, exist_ok=True)
    agg = aggregate(runs)
    files = []
    atomic_write_text(out / "runs.csv", runs[list(RUN_COLUMNS)].to_csv(index=False))
    atomic_write_text(out / "summary.csv", agg.to_csv(index=False))
    md = summary_markdown(agg, runs)
    atomic_write_text(out / "summary.md", md)
    files += [out / "runs.csv", out / "summary.csv", out / "summary.md"]
    images: list[tuple[str, Path]] = []
    if not agg.empty:
        images += [
            ("Model size on disk", figures.size_pie(agg, out / "sizes.png")),
            ("Accuracy and macro-F1", figures.accuracy_bars(agg, out / "accuracy_f1.png")),
            ("Speedup", figures.speedup_bars(agg, out / "speedup.png")),
            ("Compression ratio", figures.compression_bars(agg, out / "compression_ratio.png")),
            ("Pareto front", figures.pareto_plot(agg, out / "pareto.png")),
        ]
        for key, title in TABLES.items():
            part = agg[agg["table"] == key]
            if not part.empty:
                images.append((f"Radar: {title}", figures.radar(part, out / f"radar_{key}.png", title)))
        done = runs[runs["status"] == "finished"].drop_duplicates("config_hash")
        labels = dict(zip(agg["run_dir"], agg["model"], strict=True))
        for _, r in done.iterrows():
            if r["confusion_matrix"] and r["label_names"]:
                name = labels.get(r["run_dir"], r["model"])
                images.append(
                    (
                        f"Confusion matrix: {name}",
                        figures.confusion(
                            r["confusion_matrix"],
                            r["label_names"],
                            out / "confusion" / f"{_slug(name)}.png",
                            f"{name} (seed {r['seed']}, test set)",
                        ),
                    )
                )
    files += [p for _, p in images]
    atomic_write_text(out / "index.html", _html(agg, runs, md, images, root))
    files.append(out / "index.html")
    log.info("Report of %d runs (%d configurations) in %s", len(runs), len(agg), out)
    return {"dir": out, "files": files, "summary": agg}


def _img(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _html(agg: pd.DataFrame, runs: pd.DataFrame, md: str, images, root: Path) -> str:
    intro = html.escape(md.split("\n## ")[0].replace("# bertcompress report\n", "").strip())
    tables = []
    for key, title in TABLES.items():
        df = display_table(agg, key)
        body = df.to_html(index=False, border=0, classes="t", escape=True) if not df.empty else "<p><i>no runs</i></p>"
        tables.append(f"<h2>{html.escape(title)}</h2>{body}")
    front = pareto_table(agg)
    tables.append(
        "<h2>Pareto front (macro-F1 vs latency p50)</h2>"
        + (front.to_html(index=False, border=0, classes="t") if not front.empty else "<p><i>no runs</i></p>")
    )
    caches = cache_summary(runs)
    if caches:
        tables.append(f"<p>{html.escape(caches)}</p>")
    failed = runs[runs["status"] != "finished"]
    if not failed.empty:
        tables.append(
            "<h2>Failed jobs</h2>" + failed[["run_dir", "model", "error"]].to_html(index=False, border=0, classes="t")
        )
    figs = "".join(
        f'<figure><img src="{_img(p)}" alt="{html.escape(t)}"><figcaption>{html.escape(t)}</figcaption></figure>'
        for t, p in images
    )
    style = (
        "body{font-family:'Noto Sans','Noto Sans Bengali',sans-serif;max-width:1200px;margin:2em auto;color:#222}"
        "table.t{border-collapse:collapse;font-size:13px;margin-bottom:1em}"
        "table.t th,table.t td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:right}"
        "table.t td:first-child,table.t th:first-child{text-align:left}"
        "figure{display:inline-block;margin:1em;vertical-align:top}img{max-width:100%}"
        "figcaption{font-size:13px;color:#555}"
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>bertcompress report: {html.escape(str(root))}</title>'
        f"<style>{style}</style></head><body><h1>bertcompress report</h1><p>{html.escape(str(root))}</p>"
        f"<p>{intro}</p>{''.join(tables)}<h2>Figures</h2>{figs}</body></html>"
    )
