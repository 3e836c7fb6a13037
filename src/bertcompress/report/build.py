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
from bertcompress.utils.io import atomic_dir, atomic_write_text

log = logging.getLogger(__name__)
RUN_COLUMNS = (
    "run_dir", "status", "error", "model", "teacher", "student", "compression", "kd", "seed", "data", "accuracy",
    "macro_f1", "precision", "recall", "retention", "speedup", "compression_ratio", "params", "size_mb",
    "latency_p50_ms", "latency_p95_ms", "throughput_seq_s", "teacher_cache_hit", "logit_cache_hit", "wall_time_s",
    "best_val_macro_f1", "derived",
)  # fmt: skip


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name.replace("→", "-to-")).strip("_")[:120]


def make_report(root: str | Path, out_dir: str | Path | None = None) -> dict:
    """Aggregate ``root`` and write the report, whole or not at all (built in a temp dir, then renamed);
    returns ``{"dir", "files", "summary", "skipped_figures"}`` (summary: the aggregate; skipped_figures:
    ``{title: why}`` for each figure that could not be drawn, also listed in index.html).

    Raises:
        FileNotFoundError: when ``root`` holds no results.json (or none that is valid JSON).
    """
    root = Path(root)
    out = Path(out_dir) if out_dir else root / "report"
    runs = load_runs(root)  # before creating anything under root
    agg = aggregate(runs)
    md = summary_markdown(agg, runs)
    with atomic_dir(out) as tmp:
        atomic_write_text(tmp / "runs.csv", runs[list(RUN_COLUMNS)].to_csv(index=False))
        atomic_write_text(tmp / "summary.csv", agg.to_csv(index=False))
        atomic_write_text(tmp / "summary.md", md)
        images, skipped = _figures(agg, runs, tmp)
        for title, why in skipped.items():
            log.warning("Figure %r not drawn: %s", title, why)
        atomic_write_text(tmp / "index.html", _html(agg, runs, md, images, root, skipped))
        files = [out / p.relative_to(tmp) for p in sorted(tmp.rglob("*")) if p.is_file()]
    log.info("Report of %d jobs (%d configurations) in %s", runs.attrs.get("jobs", len(runs)), len(agg), out)
    return {"dir": out, "files": files, "summary": agg, "skipped_figures": skipped}


def _figures(agg: pd.DataFrame, runs: pd.DataFrame, out: Path) -> tuple[list[tuple[str, Path]], dict[str, str]]:
    """Draw every figure into ``out``; returns ``([(title, png)], {title: why not drawn})``."""
    timed = agg[pd.to_numeric(agg.get("latency_p50_ms"), errors="coerce").notna()] if not agg.empty else agg
    no_bench = "no finished run has a benchmark (benchmark.enabled=false): nothing to plot"
    plans = [
        ("Model size on disk", figures.size_pie, timed, out / "sizes.png", no_bench),
        ("Accuracy and macro-F1", figures.accuracy_bars, agg, out / "accuracy_f1.png", None),
        ("Speedup", figures.speedup_bars, timed, out / "speedup.png", no_bench),
        ("Compression ratio", figures.compression_bars, timed, out / "compression_ratio.png", no_bench),
        ("Pareto front", figures.pareto_plot, timed, out / "pareto.png", no_bench),
    ]
    for key, title in TABLES.items():
        part = agg[agg["table"] == key] if not agg.empty else agg
        if not agg.empty and len(part) < 2:
            continue  # a radar compares configurations: none with fewer than two
        radar = lambda a, p, t=title: figures.radar(a, p, t)  # noqa: E731
        plans.append((f"Radar: {title}", radar, part, out / f"radar_{key}.png", None))
    if not agg.empty:
        done = runs[(runs["status"] == "finished") & runs["confusion_matrix"].notna()].drop_duplicates("config_hash")
        first = {r["config_hash"]: r for _, r in done.iterrows()}
        for i, (h, name) in enumerate(zip(agg["config_hash"], agg["model"], strict=True)):  # the tables' order
            r = first.get(h)
            if r is not None and r["confusion_matrix"] and r["label_names"]:
                title = f"{name} (seed {r['seed']}, test set)"
                draw = lambda _a, p, r=r, t=title: figures.confusion(r["confusion_matrix"], r["label_names"], p, t)  # noqa: E731
                png = out / "confusion" / f"{i + 1:02d}_{_slug(name)}.png"
                plans.append((f"Confusion matrix: {name}", draw, agg, png, None))
    images, skipped = [], {}
    for title, draw, data, path, empty_reason in plans:
        if agg.empty:
            skipped[title] = "no job finished (the failed jobs are listed above)"
        elif data.empty:
            skipped[title] = empty_reason or "no data"
        else:
            try:
                images.append((title, draw(data, path)))
            except Exception as e:  # noqa: BLE001  (one figure's failure must not cost the rest of the report)
                skipped[title] = f"{type(e).__name__}: {e}"
    return images, skipped


def _img(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _html(agg: pd.DataFrame, runs: pd.DataFrame, md: str, images, root: Path, skipped: dict[str, str]) -> str:
    intro = html.escape(md.split("\n## ")[0].replace("# bertcompress report\n", "").strip())
    tables = []
    for key, title in TABLES.items():
        df = display_table(agg, key)
        if not df.empty:  # as summary.md: a table no configuration falls into is left out
            tables.append(f"<h2>{html.escape(title)}</h2>" + df.to_html(index=False, border=0, classes="t"))
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
    unread = runs.attrs.get("skipped_files") or []
    if unread:
        items = "".join(f"<li>{html.escape(f)}</li>" for f in unread)
        tables.append(f"<h2>results.json files skipped</h2><ul>{items}</ul>")
    if skipped:
        items = "".join(f"<li>{html.escape(t)}: {html.escape(why)}</li>" for t, why in skipped.items())
        tables.append(f"<h2>Figures not drawn</h2><ul>{items}</ul>")
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
