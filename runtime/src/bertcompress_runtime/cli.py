"""``bertcompress-predict`` and ``bertcompress-bench`` without torch. An ``hf`` / ``torch`` artifact is
handed to the training package's commands when it is installed (the output is the same)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from bertcompress_runtime.labelmap import evaluate, format_table, identity_map, read_label_map
from bertcompress_runtime.machine import cpu_model_and_flags
from bertcompress_runtime.manifest import read_manifest
from bertcompress_runtime.text import read_text_lines

# the group under which an installed package hands over the artifacts this runtime does not run (hf and
# torch formats, sequence labelers): entry points ``predict`` and ``bench``, ``argv -> exit code``
COMMANDS_GROUP = "bertcompress_runtime.commands"


def _handler(path: str, command: str):
    """The installed ``command`` of :data:`COMMANDS_GROUP` when the artifact at ``path`` needs it (an hf/torch
    artifact or a sequence labeler) and one is installed; None: the runtime runs it (or reports why not)."""
    from importlib.metadata import entry_points

    try:
        manifest = read_manifest(path)
    except (FileNotFoundError, ValueError):
        return None  # the runtime reports the error itself
    if manifest["format"] not in {"hf", "torch"} and manifest.get("task", "classification") == "classification":
        return None
    for ep in entry_points(group=COMMANDS_GROUP, name=command):
        try:
            return ep.load()
        except ImportError:  # registered, but not importable here (no torch): the runtime says what to do
            return None
    return None


def read_texts(args) -> list[str]:
    """``args.text``, or the non-blank lines of ``args.file`` (``-`` or none: stdin).

    Raises:
        ValueError: a missing or unreadable file, or one that is not UTF-8 text (naming the file and byte).
    """
    if args.text:
        return list(args.text)
    if not args.file or args.file == "-":
        return [line.rstrip("\n") for line in sys.stdin if line.strip()]
    return read_text_lines(args.file, f"--file {args.file}")


def _parser(prog: str, description: str, example: str) -> argparse.ArgumentParser:
    """A parser whose ``--help`` shows every default and an example, with the ``--threads`` option."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog=f"example: {example}",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="intra-op CPU threads (none: the runtime's default, all cores)"
    )
    return parser


def predict_parser(description: str) -> argparse.ArgumentParser:
    """The options of ``bertcompress-predict``, shared with the training install's ``predict``."""
    parser = _parser("bertcompress-predict", description, 'bertcompress-predict <run>/artifact "আমি খুব খুশি"')
    parser.add_argument("artifact", help="an artifact dir (a run's artifact/, with manifest.json)")
    parser.add_argument("text", nargs="*", default=[], help="texts to classify (none: read --file or stdin)")
    parser.add_argument("--file", "-f", default=None, help="a file with one text per line ('-' for stdin)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per text")
    return parser


def predict(argv: list[str] | None = None) -> int:
    """Classify texts from the command line, a file (one text per line) or stdin; print label and
    probabilities (one JSON object per text with --json)."""
    argv = sys.argv[1:] if argv is None else argv
    parser = predict_parser(predict.__doc__)
    args = parser.parse_args(argv)
    handler = _handler(args.artifact, "predict")
    if handler is not None:  # the training install's (bertcompress.cli.predict), registered as an entry point
        return handler(argv)
    from bertcompress_runtime.predictor import load

    try:
        predictor = load(args.artifact, threads=args.threads)
        texts = read_texts(args)
        if not texts:
            parser.error("no text given (pass texts, --file, or pipe them on stdin)")
        probs = predictor.predict_proba(texts)
    except (FileNotFoundError, ValueError, ImportError) as e:  # ArtifactError is a ValueError
        print(f"bertcompress-predict: {e}", file=sys.stderr)
        return 2
    print_predictions(texts, probs, predictor.label_names, args.json)
    return 0


def print_predictions(texts, probs: np.ndarray, names: list[str], as_json: bool) -> None:
    """One line per text: label, the probabilities sorted, the text (or one JSON object with ``as_json``)."""
    for text, p in zip(texts, probs, strict=True):
        label = names[int(p.argmax())]
        dist = {name: round(float(v), 4) for name, v in zip(names, p, strict=True)}
        if as_json:
            print(json.dumps({"text": text, "label": label, "probabilities": dist}, ensure_ascii=False))
        else:
            shown = "  ".join(f"{k}={v:.3f}" for k, v in sorted(dist.items(), key=lambda kv: -kv[1]))
            print(f"{label}\t{shown}\t{text}")


def read_labelled(path: str, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    """Texts and labels (stripped) of a CSV / TSV file with a header row.

    Raises:
        ValueError: a missing column (naming the file and its columns), or an empty text or label
            (naming the row).
    """
    delimiter = "\t" if path.endswith((".tsv", ".tab")) else ","
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        missing = [c for c in (text_column, label_column) if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{path}: no column {missing}; its columns are {reader.fieldnames} (--text-column, --label-column)"
            )
        texts, labels = [], []
        for i, row in enumerate(reader):
            text, label = (row[text_column] or "").strip(), (row[label_column] or "").strip()
            if not text or not label:
                raise ValueError(f"{path}: data row {i} has an empty text or label; fix or remove it")
            texts.append(row[text_column])
            labels.append(label)
    return texts, labels


def _latency(predictor, texts, runs: int, warmup: int) -> dict:
    """Batch-1 latency (ms) over ``runs`` texts after ``warmup``, and batch-32 throughput over 256 texts,
    with the one timing loop (:mod:`bertcompress_runtime.timing`)."""
    from bertcompress_runtime.timing import interleaved_latency, latency_summary, throughput_seconds

    singles = predictor.batches(texts[: runs + warmup], batch_size=1)
    times = interleaved_latency([predictor.logits], [singles], min(warmup, len(singles)), 10)[0]
    big = predictor.batches(texts[:256], batch_size=32)
    seconds = throughput_seconds([predictor.logits], [big])[0]
    return {
        "latency_ms": latency_summary(times),
        "throughput_seq_s": min(256, len(texts)) / seconds if seconds else None,
    }


def bench_parser(description: str) -> argparse.ArgumentParser:
    """The options of ``bertcompress-bench``, shared with the training install's ``bench``."""
    example = "bertcompress-bench <run>/artifact --data test.csv --label-map label_map.yaml --threads 1"
    parser = _parser("bertcompress-bench", description, example)
    parser.add_argument("artifact", help="the artifact dir to benchmark (with manifest.json)")
    parser.add_argument(
        "--reference",
        default=None,
        help="a reference artifact dir (e.g. the fp32 teacher; training install): adds speedup and compression ratio",
    )
    parser.add_argument(
        "--data", required=True, help="CSV/TSV with text and label columns (the training install: XLSX, CoNLL too)"
    )
    parser.add_argument("--text-column", default="text", help="the column of --data that holds the texts")
    parser.add_argument("--label-column", default="label", help="the column of --data that holds the gold labels")
    parser.add_argument("--label-map", default=None, help="YAML/JSON {data label: artifact label | [labels] | null}")
    parser.add_argument("--limit", type=int, default=None, help="use the first N rows (none: all)")
    parser.add_argument("--runs", type=int, default=50, help="timed batch-1 passes for latency p50/p95 (ms)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed passes before timing")
    parser.add_argument("--out", default=None, help="write the result JSON here (atomically)")
    return parser


def bench(argv: list[str] | None = None) -> int:
    """Score an artifact on a labelled CSV/TSV (accuracy, macro-F1, per-class table; --label-map for another
    corpus' labels) and time it (batch-1 p50/p95, batch-32 throughput)."""
    argv = sys.argv[1:] if argv is None else argv
    parser = bench_parser(bench.__doc__)
    args = parser.parse_args(argv)
    handler = _handler(args.artifact, "bench") or (_handler(args.reference, "bench") if args.reference else None)
    if handler is not None:  # the training install's (bertcompress.cli.bench), registered as an entry point
        return handler(argv)
    import platform

    import onnxruntime

    from bertcompress_runtime.predictor import load

    try:
        predictor = load(args.artifact, threads=args.threads)
        texts, labels = read_labelled(args.data, args.text_column, args.label_column)
        if args.limit:
            texts, labels = texts[: args.limit], labels[: args.limit]
        lmap = (
            read_label_map(args.label_map, predictor.label_names)
            if args.label_map
            else identity_map(predictor.label_names)
        )
        result = evaluate(predictor.predict_proba(texts), labels, lmap, args.data)
    except (FileNotFoundError, ValueError, ImportError) as e:
        print(f"bertcompress-bench: {e}", file=sys.stderr)
        return 2
    result.update(_latency(predictor, texts, args.runs, args.warmup))
    size = sum(p.stat().st_size for p in Path(args.artifact).iterdir() if p.is_file()) / 1e6
    result["size_mb"] = size
    result["machine"] = {
        "cpu": platform.processor() or platform.machine(),
        "onnxruntime": onnxruntime.__version__,
        "threads": args.threads,
        "cpu_flags": cpu_model_and_flags()[1],
    }
    result["execution"] = predictor.execution
    flags = ",".join(k for k, v in result["machine"]["cpu_flags"].items() if v) or "none"
    run_by = "/".join(str(v) for v in predictor.execution.values() if v is not None)
    print(
        f"machine: {result['machine']['cpu']} ({flags}) | {args.threads or 'default'} threads | onnxruntime "
        f"{onnxruntime.__version__} | ran as {run_by} | no torch"
    )
    print(
        f"{Path(args.artifact).name}: acc {result['accuracy']:.2f}  macro-F1 {result['macro_f1']:.2f}  "
        f"p50 {result['latency_ms']['p50']:.2f} ms  p95 {result['latency_ms']['p95']:.2f} ms  "
        f"{result['throughput_seq_s']:.1f} seq/s  {size:.1f} MB  ({result['n']} rows, {result['dropped']} dropped)"
    )
    print(format_table(result))
    if args.out:
        tmp = Path(args.out).with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1), encoding="utf-8")
        tmp.replace(args.out)
    return 0
