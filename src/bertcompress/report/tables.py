"""Aggregate runs over seeds into the paper's tables (mean ± std, n seeds) and flag the floor.

Rows of one configuration (same config apart from the seed, paths and loggers) are averaged;
``*_std`` is the sample standard deviation over seeds (0 with one seed). A neural row whose mean
macro-F1 does not beat the classical floor (``tfidf_lr`` on the same data) gets ``below_floor``.
The Pareto front is over (macro-F1 up, latency p50 down): a row is on it when no other row is at
least as good on both and better on one.
"""

from __future__ import annotations

import pandas as pd

from bertcompress.report.collect import TABLES

METRICS = (
    "accuracy",
    "macro_f1",
    "entity_f1",
    "precision",
    "recall",
    "retention",
    "speedup",
    "throughput_speedup",
    "compression_ratio",
    "params",
    "size_mb",
    "latency_p50_ms",
    "latency_p95_ms",
    "throughput_seq_s",
    "wall_time_s",
)
STD_METRICS = ("accuracy", "macro_f1", "entity_f1", "retention", "speedup", "compression_ratio", "latency_p50_ms")
FLOOR_MODEL = "tfidf_lr"


def _labels(runs: pd.DataFrame) -> dict[str, str]:
    """config_hash -> readable label; labels shared by different configs get the keys that differ."""
    labels = {}
    for model, group in runs.groupby("model", sort=False):
        hashes = list(dict.fromkeys(group["config_hash"]))
        if len(hashes) == 1:
            labels[hashes[0]] = model
            continue
        flats = {h: group[group["config_hash"] == h]["config_flat"].iloc[0] for h in hashes}
        keys = sorted({k for f in flats.values() for k in f})
        differing = [k for k in keys if len({repr(f.get(k)) for f in flats.values()}) > 1]
        # the model-defining groups first: what a reader needs to tell the rows apart
        differing.sort(key=lambda k: (k.split(".")[0] not in {"student", "compression", "teacher", "data"}, k))
        for h, f in flats.items():
            labels[h] = f"{model} [{', '.join(_differences(f, differing)[:3])}]"
    return labels


def _differences(flat: dict, differing: list[str]) -> list[str]:
    """How one configuration differs from the others of its label: ``group=<choice name>`` for a config
    group whose choice differs (``augment=tang2019_unlabeled_bn``), else ``key=value`` (``student.seed=2``)."""
    parts, groups = [], set()
    for k in differing:
        group = k.split(".")[0]
        if group in groups:
            continue
        if f"{group}.name" in differing:  # another choice of the group: its name says what differs
            groups.add(group)
            parts.append(f"{group}={flat.get(f'{group}.name')}")
        else:
            parts.append(f"{k}={flat.get(k)}")
    return parts


def pareto_front(f1: pd.Series, latency: pd.Series) -> pd.Series:
    """Boolean mask of the non-dominated rows (higher macro-F1, lower latency); NaN rows are never on it."""
    ok = f1.notna() & latency.notna()
    on = pd.Series(False, index=f1.index)
    for i in f1.index[ok]:
        dominated = (
            (f1[ok] >= f1[i]) & (latency[ok] <= latency[i]) & ((f1[ok] > f1[i]) | (latency[ok] < latency[i]))
        ).any()
        on[i] = not dominated
    return on


def eval_set_metrics(runs: pd.DataFrame) -> tuple[str, ...]:
    """The out-of-domain columns of ``runs`` (``<set>_macro_f1``, ``<set>_retention``, ``<set>_teacher_macro_f1``
    for each set any run scored), in set order."""
    names = dict.fromkeys(
        n for v in runs.get("eval_set_names", pd.Series(dtype=str)).dropna() for n in v.split(",") if n
    )
    return tuple(f"{n}_{m}" for n in names for m in ("macro_f1", "retention", "teacher_macro_f1"))


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds per configuration, in table order, with floor and Pareto flags.

    Returns:
        One row per configuration: ``table``, ``model``, ``teacher``, ``student``, ``compression``, ``kd``,
        ``n_seeds``, ``seeds``, each metric's mean (and ``<metric>_std`` for the main ones), per out-of-domain
        set ``<set>_macro_f1`` (and ``_std``), ``<set>_retention`` and ``<set>_teacher_macro_f1``,
        ``teacher_cache_hits``/``logit_cache_hits`` (counts over the runs), ``below_floor``, ``pareto``.
    """
    done = runs[runs["status"] == "finished"].copy()
    if done.empty:
        return pd.DataFrame(columns=["table", "model", "n_seeds"])
    labels = _labels(done)
    out = []
    for h, g in done.groupby("config_hash", sort=False):
        first = g.iloc[0]
        row = {
            "table": first["table"],
            "model": labels[h],
            "config_hash": h,
            "teacher": first["teacher"],
            "student": first["student"],
            "compression": first["compression"],
            "kd": first["kd"],
            "data": first["data"],
            "n_seeds": int(g["seed"].nunique()),
            "seeds": ",".join(str(s) for s in sorted(g["seed"].dropna().unique())),
            "runs": len(g),
            "teacher_cache_hits": int((g["teacher_cache_hit"] == True).sum()),  # noqa: E712  (None = n/a)
            "logit_cache_hits": int((g["logit_cache_hit"] == True).sum()),  # noqa: E712
            "run_dir": first["run_dir"],
            "busy_runs": int(g["busy"].fillna(False).astype(bool).sum()) if "busy" in g else 0,
        }
        for m in METRICS + eval_set_metrics(done):
            vals = pd.to_numeric(g[m], errors="coerce") if m in g else pd.Series(dtype=float)
            row[m] = float(vals.mean()) if vals.notna().any() else None
            if m in STD_METRICS or m.endswith("_macro_f1") and not m.endswith("teacher_macro_f1"):
                row[f"{m}_std"] = float(vals.std(ddof=1)) if vals.notna().sum() > 1 else 0.0
        out.append(row)
    agg = pd.DataFrame(out)
    floors = agg[agg["model"].str.startswith(FLOOR_MODEL)].groupby("data")["macro_f1"].mean()
    agg["floor_macro_f1"] = agg["data"].map(floors)
    neural = ~agg["model"].str.startswith(FLOOR_MODEL)
    agg["below_floor"] = neural & agg["floor_macro_f1"].notna() & (agg["macro_f1"] <= agg["floor_macro_f1"])
    agg["pareto"] = pareto_front(agg["macro_f1"], agg["latency_p50_ms"])
    order = {t: i for i, t in enumerate(TABLES)}
    agg["_t"] = agg["table"].map(order)
    return agg.sort_values(["_t", "macro_f1"], ascending=[True, False]).drop(columns="_t").reset_index(drop=True)


def _pm(mean, std, fmt: str) -> str:
    if mean is None or pd.isna(mean):
        return "–"
    s = format(mean, fmt)
    return f"{s} ± {format(std, fmt)}" if std and not pd.isna(std) and std > 0 else s


def display_table(agg: pd.DataFrame, table: str) -> pd.DataFrame:
    """The human-readable rows of one table: the paper's columns plus latency, retention and seeds."""
    rows = []
    part = agg[agg["table"] == table]
    # NER rows (task=ner): accuracy is token accuracy, macro-F1 the entity macro-F1 over types, and the
    # entity F1 (micro, the CoNLL figure) gets its own column, which retention is measured on
    ner = "entity_f1" in part and part["entity_f1"].notna().any()
    sets = [c[: -len("_retention")] for c in part.columns if c.endswith("_retention") and part[c].notna().any()]
    for _, r in part.iterrows():
        flag = " ⚠ below floor" if r["below_floor"] else ""
        if r.get("busy_runs", 0):  # timings taken while the machine was busy: suspect
            flag += " (busy machine)"
        entity = {"entity F1": _pm(r["entity_f1"], r.get("entity_f1_std"), ".2f")} if ner else {}
        rows.append(
            {
                "model": r["model"] + flag,
                "accuracy %": _pm(r["accuracy"], r.get("accuracy_std"), ".2f"),
                **entity,
                "macro-F1": _pm(r["macro_f1"], r.get("macro_f1_std"), ".2f"),
                "speedup ×": _pm(r["speedup"], r.get("speedup_std"), ".2f"),
                "#params (M)": "–" if pd.isna(r["params"]) else f"{r['params'] / 1e6:.2f}",
                "size MB": "–" if pd.isna(r["size_mb"]) else f"{r['size_mb']:.1f}",
                "compression ×": _pm(r["compression_ratio"], r.get("compression_ratio_std"), ".2f"),
                "latency p50 ms": _pm(r["latency_p50_ms"], r.get("latency_p50_ms_std"), ".2f"),
                "F1 retention %": "–" if pd.isna(r["retention"]) else f"{100 * r['retention']:.1f}",
                **{
                    f"{n} macro-F1 (retention %)": _pm(r[f"{n}_macro_f1"], r.get(f"{n}_macro_f1_std"), ".2f")
                    + ("" if pd.isna(r[f"{n}_retention"]) else f" ({100 * r[f'{n}_retention']:.1f})")
                    for n in sets
                },
                "seeds (n)": f"{r['seeds']} ({r['n_seeds']})"
                + (f", {r['runs']} runs" if r["runs"] > r["n_seeds"] else ""),
            }
        )
    return pd.DataFrame(rows)


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub Markdown table of ``df`` (``_no runs_`` when empty)."""
    if df.empty:
        return "_no runs_\n"
    head = "| " + " | ".join(df.columns) + " |\n|" + "---|" * len(df.columns) + "\n"
    return head + "".join("| " + " | ".join(str(v) for v in row) + " |\n" for row in df.itertuples(index=False))


def pareto_table(agg: pd.DataFrame) -> pd.DataFrame:
    """The non-dominated rows, fastest first: model, macro-F1, latency p50 (ms), size (MB); empty when no
    configuration finished."""
    headers = {"model": "model", "macro_f1": "macro-F1", "latency_p50_ms": "latency p50 ms", "size_mb": "size MB"}
    if agg.empty or "pareto" not in agg:
        return pd.DataFrame(columns=list(headers.values()))
    front = agg[agg["pareto"]].sort_values("latency_p50_ms")
    return front[list(headers)].round(2).rename(columns=headers)


def cache_summary(runs: pd.DataFrame) -> str | None:
    """One line: in how many finished runs the teacher was fine-tuned / reused from the cache, and its
    logits computed / reused; None when no run recorded its cache use."""
    hits = runs[(runs["status"] == "finished") & runs["teacher_cache_hit"].notna()]
    if hits.empty:
        return None
    teacher, logits = hits["teacher_cache_hit"], hits["logit_cache_hit"]
    return (
        f"Caches: teacher fine-tuned in {int((teacher == False).sum())} run(s), "  # noqa: E712
        f"reused in {int((teacher == True).sum())}; teacher logits computed in "  # noqa: E712
        f"{int((logits == False).sum())}, reused in {int((logits == True).sum())}."  # noqa: E712
    )


def summary_markdown(agg: pd.DataFrame, runs: pd.DataFrame) -> str:
    """``summary.md``: the paper's tables that have rows, the floor, the Pareto front, cache hits and failed jobs."""
    parts = ["# bertcompress report\n"]
    failed = runs[runs["status"] != "finished"]
    jobs = runs[~runs["derived"].fillna(False).astype(bool)] if "derived" in runs else runs
    finished = jobs[jobs["status"] == "finished"]
    parts.append(
        f"{len(finished)} finished jobs, {len(failed)} failed; {agg['n_seeds'].max() if not agg.empty else 0} seed(s) at most "
        "per configuration (mean ± std over seeds). Speedup and compression ratio are against the fp32 teacher "
        "measured in the same process; latency at batch 1 on the run's machine.\n"
    )
    converted = runs.attrs.get("converted_units") or []
    if converted:
        parts.append(
            f"Note: {len(converted)} run(s) were written when validation figures (best_val_macro_f1) were fractions; "
            "they were converted to percent on reading.\n"
        )
    floor = agg[agg["model"].str.startswith(FLOOR_MODEL)]
    if not floor.empty:
        parts.append(
            f"Classical floor ({FLOOR_MODEL}): macro-F1 {floor['macro_f1'].mean():.2f}; "
            f"{int(agg['below_floor'].sum())} neural row(s) do not beat it (⚠).\n"
        )
    for key, title in TABLES.items():  # a table no configuration falls into is left out
        table = display_table(agg, key)
        if not table.empty:
            parts.append(f"\n## {title}\n\n" + markdown_table(table))
    parts.append("\n## Pareto front (macro-F1 vs latency p50)\n\n")
    parts.append(markdown_table(pareto_table(agg)))
    for model, search in searches(runs):
        parts.append(f"\n## Compression search (`compression=auto`): {model}\n\n" + markdown_table(search))
    caches = cache_summary(runs)
    if caches:
        parts.append(f"\n{caches}\n")
    if not failed.empty:
        parts.append("\n## Failed jobs\n\n")
        parts.append(markdown_table(failed[["run_dir", "model", "error"]].fillna("")))
    return "".join(parts)


def searches(runs: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """``(model, table)`` per finished ``compression=auto`` run: every candidate with its validation macro-F1,
    the difference from fp32, whether it held the tolerance, batch-1 p50, throughput, speedup over fp32 in
    its own timing round, size and status (``winner``)."""
    out = []
    if "compression_search" not in runs:
        return out
    for _, run in runs[runs["compression_search"].notna()].iterrows():
        rows = []
        for r in run["compression_search"]:
            rows.append({
                "candidate": r["candidate"],
                "val macro-F1": _num(r.get("val_macro_f1"), "{:.2f}"),
                "Δ val": _num(r.get("delta_val_macro_f1"), "{:+.2f}"),
                "within": {True: "yes", False: "no"}.get(r.get("within_tolerance"), ""),
                "p50 ms": _num(r.get("p50_ms"), "{:.2f}"),
                "texts/s": _num(r.get("throughput_seq_s"), "{:.1f}"),
                "speedup ×": _num(r.get("speedup"), "{:.2f}"),
                "round": r.get("timing_round") or "",
                "MB": _num(r.get("size_mb"), "{:.1f}"),
                "runtime": "/".join(str(v) for v in (r.get("execution") or {}).values() if v is not None),
                "status": r.get("status", ""),
            })  # fmt: skip
        out.append((run["model"], pd.DataFrame(rows)))
    return out


def _num(value, fmt: str) -> str:
    return fmt.format(value) if isinstance(value, int | float) and value == value else ""
