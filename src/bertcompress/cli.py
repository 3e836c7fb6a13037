"""Console scripts: ``predict`` (classify text with any saved artifact), ``bench`` (benchmark an artifact
against a reference on a test file; ``--label-map`` scores another corpus' labels), ``report`` (a sweep's
tables and figures) and ``export`` (an artifact the torch-free runtime runs). ``bertcompress-predict`` and
``bertcompress-bench`` belong to bertcompress-runtime, which hands hf / torch artifacts to these."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def predict(argv: list[str] | None = None) -> int:
    """Classify texts from the command line, a file (one text per line) or stdin; print label and probabilities
    (for a NER artifact: tag each whitespace-separated word)."""
    from bertcompress_runtime.cli import predict_parser

    parser = predict_parser(predict.__doc__)
    args = parser.parse_args(argv)
    import torch
    from bertcompress_runtime.cli import print_predictions, read_texts

    from bertcompress.artifacts import load_artifact

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        predictor = load_artifact(args.artifact, threads=args.threads)
        texts = read_texts(args)
        if not texts:
            parser.error("no text given (pass texts, --file, or pipe them on stdin)")
        probs = predictor.predict_proba(texts) if predictor.task != "ner" else None
    except (FileNotFoundError, ValueError) as e:  # ArtifactError is a ValueError: the message says what to do
        print(f"bertcompress-predict: {e}", file=sys.stderr)
        return 2
    if predictor.task == "ner":  # a sequence labeler: whitespace-split words in, one BIO tag per word out
        sentences = [t.split() for t in texts]
        for words, tags in zip(sentences, predictor.predict_labels(sentences), strict=True):
            names = [predictor.label_names[i] for i in tags]
            if args.json:
                print(json.dumps({"tokens": words, "tags": names}, ensure_ascii=False))
            else:
                print(" ".join(f"{w}/{t}" for w, t in zip(words, names, strict=True)))
        return 0
    print_predictions(texts, probs, predictor.label_names, args.json)
    return 0


def bench(argv: list[str] | None = None) -> int:
    """Benchmark an artifact (optionally against a reference artifact) on a labelled test table."""
    from bertcompress_runtime.cli import bench_parser

    parser = bench_parser(bench.__doc__)
    args = parser.parse_args(argv)
    if args.label_map:
        return _bench_mapped(args)
    from bertcompress.benchmark.bench import benchmark
    from bertcompress.utils.io import atomic_write_json

    try:
        predictor, reference, texts, labels = _bench_inputs(args)
    except (FileNotFoundError, ValueError) as e:  # ArtifactError and DataError are ValueErrors
        print(f"bertcompress-bench: {e}", file=sys.stderr)
        return 2
    result = benchmark(
        predictor,
        texts,
        labels,
        reference,
        n_runs=args.runs,
        warmup=args.warmup,
        threads=args.threads,
    )
    m = result["machine"]
    print(
        f"machine: {m['cpu']} | {m['torch_threads']} threads | torch {m['versions']['torch']} | "
        f"onnxruntime {m['versions']['onnxruntime']}"
    )
    head = "entity-F1" if predictor.task == "ner" else "macro-F1"
    score = result["test"]["f1" if predictor.task == "ner" else "macro_f1"]
    print(
        f"{Path(args.artifact).name}: acc {result['test']['accuracy']:.2f}  {head} {score:.2f}  "
        f"p50 {result['latency_ms']['p50']:.2f} ms  p95 {result['latency_ms']['p95']:.2f} ms  "
        f"{result['throughput_seq_s']:.1f} seq/s  {result['size_mb']:.1f} MB"
    )
    if reference is not None:
        print(f"speedup {result['speedup']:.2f}x  compression {result['compression_ratio']:.2f}x vs {args.reference}")
    if args.out:
        atomic_write_json(args.out, result)
    return 0


def _bench_inputs(args) -> tuple:
    """``(predictor, reference or None, texts, label ids)`` of a ``bench`` command.

    Raises:
        FileNotFoundError, ArtifactError, DataError: a missing or unsafe artifact, a bad data file.
    """
    from bertcompress.artifacts import load_artifact
    from bertcompress.data.readers import DataError, clean_frame, read_table

    predictor = load_artifact(args.artifact, threads=args.threads)
    reference = load_artifact(args.reference, threads=args.threads) if args.reference else None
    index = {n: i for i, n in enumerate(predictor.label_names)}
    if predictor.task == "ner":
        from bertcompress.data.conll import read_conll

        sentences = read_conll(args.data)[: args.limit or None]
        unknown = sorted({t for s in sentences for t in s.tags} - set(index))
        if unknown:
            raise DataError(f"{args.data}: tags {unknown} are not in the artifact's label set {predictor.label_names}")
        return predictor, reference, [s.tokens for s in sentences], [[index[t] for t in s.tags] for s in sentences]
    df, _ = clean_frame(read_table(args.data), args.data, args.text_column, args.label_column, predictor.label_names)
    if args.limit:
        df = df.head(args.limit)
    return predictor, reference, df["text"].tolist(), [index[x] for x in df["label"]]


def _bench_mapped(args) -> int:
    """``bench --label-map``: score the artifact on a corpus with other labels (the runtime's mapping), then
    time it without scoring."""
    from bertcompress_runtime.cli import read_labelled
    from bertcompress_runtime.labelmap import evaluate, format_table, read_label_map

    from bertcompress.artifacts import load_artifact
    from bertcompress.benchmark.bench import benchmark
    from bertcompress.utils.io import atomic_write_json

    try:
        predictor = load_artifact(args.artifact, threads=args.threads)
        if predictor.task == "ner":
            raise ValueError("--label-map scores whole-text classifiers, not task ner")
        texts, labels = read_labelled(args.data, args.text_column, args.label_column)
        texts, labels = texts[: args.limit or None], labels[: args.limit or None]
        result = evaluate(
            predictor.predict_proba(texts), labels, read_label_map(args.label_map, predictor.label_names), args.data
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"bertcompress-bench: {e}", file=sys.stderr)
        return 2
    timing = benchmark(
        predictor, texts, [], None, n_runs=args.runs, warmup=args.warmup, threads=args.threads, evaluate=False
    )
    result.update({k: timing[k] for k in ("latency_ms", "throughput_seq_s", "size_mb", "machine")})
    print(
        f"{Path(args.artifact).name}: acc {result['accuracy']:.2f}  macro-F1 {result['macro_f1']:.2f}  "
        f"p50 {result['latency_ms']['p50']:.2f} ms  p95 {result['latency_ms']['p95']:.2f} ms  "
        f"{result['throughput_seq_s']:.1f} seq/s  {result['size_mb']:.1f} MB  ({result['n']} rows, {result['dropped']} dropped)"
    )
    print(format_table(result))
    if args.out:
        atomic_write_json(args.out, result)
    return 0


def export(argv: list[str] | None = None) -> int:
    """Export an artifact to one the torch-free runtime (bertcompress-runtime) runs: ONNX, optionally int8."""
    parser = argparse.ArgumentParser(
        prog="bertcompress-export", description=export.__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("artifact", help="any artifact dir")
    parser.add_argument("out", help="the ONNX artifact dir to write (replaced whole)")
    parser.add_argument("--int8", action="store_true", help="ONNX Runtime dynamic int8 (MatMul, Gemm, Gather)")
    parser.add_argument("--per-channel", action="store_true", help="with --int8: one weight scale per channel")
    args = parser.parse_args(argv)
    from bertcompress.artifacts.export import export_artifact

    try:
        report = export_artifact(args.artifact, args.out, int8=args.int8, per_channel=args.per_channel)
    except (FileNotFoundError, ValueError) as e:
        print(f"bertcompress-export: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in report.items() if k != "quantization"}))
    return 0


def report(argv: list[str] | None = None) -> int:
    """Aggregate every results.json under a sweep or runs dir into tables (CSV, Markdown), PNG figures and
    one self-contained HTML page, written to <dir>/report (or --out)."""
    parser = argparse.ArgumentParser(
        prog="bertcompress-report", description=report.__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("root", nargs="?", help="a sweep dir (logs/<task>/multiruns/<time>) or any dir of runs")
    parser.add_argument("--out", default=None, help="output dir (default: <root>/report); with --results, the file")
    parser.add_argument("--results", metavar="DIR", help="write RESULTS.md from the committed summaries in DIR")
    parser.add_argument(
        "--wandb-runs",
        action="store_true",
        help="print the offline W&B run dirs of the finished jobs under root, for `wandb sync $(...)`",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.results:
        from bertcompress.report.results_doc import build_results_doc

        try:
            print(build_results_doc(args.results, args.out))
        except FileNotFoundError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    if not args.root:
        parser.error("give a sweep or runs dir (or --results DIR)")
    if args.wandb_runs:
        from bertcompress.report.tracking import finished_offline_runs

        try:
            print("\n".join(str(p) for p in finished_offline_runs(args.root)))
        except FileNotFoundError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    from bertcompress.report.build import make_report

    try:
        result = make_report(args.root, args.out)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    agg = result["summary"]
    print(f"{len(agg)} configurations -> {result['dir']}")
    for f in result["files"]:
        print(f"  {f}")
    return 0
