"""ONNX Runtime graph fusion before int8, side by side with the peer pipeline, on one fine-tuned BERT:

    python scripts/bench_fusion.py HF_DIR --data ../shared/data/ubmec/... --threads 2 --out fusion.json

Variants (all exported from the same model, timed interleaved in one process, ``threads`` intra-op threads):
- ``ort_fp32``: our export (transformers' default sdpa attention), unfused;
- ``ort_fp32_fused``: eager-attention export fused by ``onnxruntime.transformers.optimizer`` (model type bert);
- ``quant_onnx_unfused``: ``compression=quant_onnx fuse=false`` (dynamic int8: MatMul, Gemm, Gather);
- ``quant_onnx``: ``compression=quant_onnx`` (fused, then dynamic int8 incl. Attention, EmbedLayerNormalization);
- ``quant_onnx_per_channel``: the same with ``per_channel=true`` (one scale per output channel of each weight);
- ``peer_o2_vnni``: Optimum's pipeline rebuilt on ONNX Runtime's own tools (Optimum itself pins
  transformers < 4.58 and cannot sit beside transformers 5): the optimizer at ``opt_level=2`` (O2: basic +
  extended + transformer fusions), then ``quantize_dynamic`` with the settings of
  ``AutoQuantizationConfig.avx512_vnni(is_static=False)`` (QInt8 symmetric per-channel weights, QUInt8
  activations, reduce_range off, operators MatMul, Attention, Gather, EmbedLayerNormalization, Conv, LSTM,
  Transpose).

Prints and writes p50 / p95 batch-1 latency (ms), batch-32 throughput (texts/s), size (MB), argmax agreement
with ``ort_fp32`` and macro-F1 on the first N test texts, and the machine's load.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from bertcompress.utils.io import atomic_write_json


def _variants(model_dir: Path, work: Path, example: dict) -> dict[str, Path]:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model
    from transformers import AutoModelForSequenceClassification

    from bertcompress.compression.quant_onnx import export_fused, export_onnx, quantize_onnx
    from bertcompress.models.students import HFStudent

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    module = HFStudent(model)
    out = {"ort_fp32": export_onnx(module, work / "fp32.onnx", example)}
    out["ort_fp32_fused"], _ = export_fused(module, work / "fused.onnx", example)
    quantize_onnx(out["ort_fp32"], work / "int8_unfused.onnx", "dynamic", True)
    out["quant_onnx_unfused"] = work / "int8_unfused.onnx"
    quantize_onnx(out["ort_fp32_fused"], work / "int8_fused.onnx", "dynamic", True)
    out["quant_onnx"] = work / "int8_fused.onnx"
    quantize_onnx(out["ort_fp32_fused"], work / "int8_fused_pc.onnx", "dynamic", True, per_channel=True)
    out["quant_onnx_per_channel"] = work / "int8_fused_pc.onnx"
    c = model.config
    peer = optimize_model(
        str(work / "fused_eager.onnx"),
        model_type="bert",
        num_heads=c.num_attention_heads,
        hidden_size=c.hidden_size,
        opt_level=2,
    )
    peer.save_model_to_file(str(work / "peer_o2.onnx"))
    quantize_dynamic(
        str(work / "peer_o2.onnx"),
        str(work / "peer_int8.onnx"),
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=False,
        op_types_to_quantize=["MatMul", "Attention", "Gather", "EmbedLayerNormalization", "Conv", "LSTM", "Transpose"],
        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False, "DefaultTensorType": 1},
    )
    out["peer_o2_vnni"] = work / "peer_int8.onnx"
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="a fine-tuned HF classifier dir (e.g. a cached teacher)")
    parser.add_argument("--n", type=int, default=500, help="test texts for agreement and macro-F1")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds")
    parser.add_argument("--per-round", type=int, default=20, help="batch-1 runs per model per round")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    import hydra
    from bertcompress_runtime.predictor import onnx_session
    from bertcompress_runtime.timing import interleaved_latency, throughput_seconds
    from transformers import AutoTokenizer

    from bertcompress.benchmark.machine import machine_info
    from bertcompress.config import compose
    from bertcompress.metrics import classification_metrics

    cfg = compose([f"paths.data_dir={os.environ.get('BERTCOMPRESS_DATA_DIR', '../shared/data')}"])
    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare_data()
    dm.setup()
    texts, gold = dm.texts("test")[: args.n], np.array(dm.label_ids("test")[: args.n])
    tok = AutoTokenizer.from_pretrained(args.model_dir)

    def enc(batch):
        e = tok(batch, truncation=True, max_length=args.max_length, padding=True, return_tensors="np")
        return {"input_ids": e["input_ids"].astype(np.int64), "attention_mask": e["attention_mask"].astype(np.int64)}

    import torch

    example = {k: torch.from_numpy(v) for k, v in enc(texts[:4]).items()}
    with tempfile.TemporaryDirectory() as tmp:
        files = _variants(Path(args.model_dir), Path(tmp), example)
        sessions = {k: onnx_session(p, args.threads) for k, p in files.items()}
        sizes = {k: p.stat().st_size / 1e6 for k, p in files.items()}
        nodes = {}
        import onnx

        for k, p in files.items():
            g = onnx.load(str(p)).graph
            ops: dict[str, int] = {}
            for node in g.node:
                ops[node.op_type] = ops.get(node.op_type, 0) + 1
            nodes[k] = {
                "nodes": len(g.node),
                **{o: ops[o] for o in ("QAttention", "Attention", "SkipLayerNormalization", "BiasGelu") if o in ops},
            }
        singles = [enc([t]) for t in texts[: args.per_round]]
        bigs = [enc(texts[i : i + 32]) for i in range(0, min(len(texts), 256), 32)]
        load_before = os.getloadavg()[0]
        fns = [lambda b, s=s: s.run(["logits"], b) for s in sessions.values()]
        # the one timing loop: 3 warm-up calls, then each round of texts a block, session after session
        rounds = singles[:3] + singles * args.rounds
        lat = dict(zip(sessions, interleaved_latency(fns, [rounds] * len(fns), 3, len(singles)), strict=True))
        thr = dict(zip(sessions, throughput_seconds(fns, [bigs[:1] + bigs * args.rounds] * len(fns)), strict=True))
        n_big = sum(len(b["input_ids"]) for b in bigs) * args.rounds
        preds = {
            k: np.concatenate([s.run(["logits"], enc(texts[i : i + 64]))[0] for i in range(0, len(texts), 64)]).argmax(
                1
            )
            for k, s in sessions.items()
        }
    tokens = float(np.mean([b["attention_mask"].sum() for b in singles]))
    rows = {}
    for k in sessions:
        rows[k] = {
            "p50_ms": float(np.percentile(lat[k], 50)),
            "p95_ms": float(np.percentile(lat[k], 95)),
            "batch32_texts_s": n_big / thr[k],
            "size_mb": sizes[k],
            "agreement_with_fp32": float((preds[k] == preds["ort_fp32"]).mean()),
            "macro_f1": classification_metrics(gold, preds[k], dm.labels)["macro_f1"],
            **nodes[k],
        }
    machine = machine_info()
    result = {
        "rows": rows,
        "threads": args.threads,
        "n_texts": len(texts),
        "mean_tokens_batch1": tokens,
        "load_avg_1min_before": load_before,
        "load_avg_1min_after": os.getloadavg()[0],
        "machine": machine,
    }
    print(
        f"machine: {machine.get('cpu')} | {args.threads} threads | load {load_before:.2f} -> {os.getloadavg()[0]:.2f} | "
        f"{tokens:.1f} tokens per batch-1 input | {len(texts)} test texts"
    )
    print(f"{'variant':22s} {'p50 ms':>7s} {'p95 ms':>7s} {'b32 t/s':>8s} {'MB':>6s} {'agree':>6s} {'mF1':>6s} nodes")
    for k, r in rows.items():
        print(
            f"{k:22s} {r['p50_ms']:7.2f} {r['p95_ms']:7.2f} {r['batch32_texts_s']:8.1f} {r['size_mb']:6.1f} "
            f"{r['agreement_with_fp32']:6.3f} {r['macro_f1']:6.2f} {nodes[k]}"
        )
    if args.out:
        atomic_write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
