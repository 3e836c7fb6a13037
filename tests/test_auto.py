"""``compression=auto``: the fastest candidate within the tolerance wins, per-layer fallback keeps the most
sensitive layer groups in fp32, QAT is the last resort, and nothing within the budget ships fp32; the
search uses validation only and its table reaches results.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import compose, requires_ubmec
from tests.test_compression import _final_model, load_artifact_batches

ORT = {"mode": "dynamic", "backend": "onnxruntime", "quantize_embeddings": True}


class FakeHooks:
    """Save for real (so the artifacts are real), score and time by rule: ``scores[name]`` (a candidate's
    name is its artifact dir's parent ``cand_<name>``), ``p50[name]``; a per-layer-fallback build scores
    ``fallback(kept)`` from the node names it keeps in fp32."""

    def __init__(self, scores: dict, p50: dict, fallback=None):
        self.scores, self.p50, self.fallback, self.timed = scores, p50, fallback, []

    @staticmethod
    def name(d: Path) -> str:
        return d.parent.name.removeprefix("cand_") if d.parent.name.startswith("cand_") else "fp32"

    def score(self, d: Path) -> float:
        name = self.name(Path(d))
        if name in self.scores:
            return self.scores[name]
        manifest = json.loads((Path(d) / "manifest.json").read_text())
        return self.fallback(name, manifest)

    def time(self, dirs, batch_size):
        names = [self.name(Path(d)) for d in dirs]
        self.timed.append(names)
        return [
            {"p50_ms": self.p50.get(n, 1.0), "throughput_seq_s": 100 / self.p50.get(n, 1.0), "size_mb": 1.0,
             "execution": {"backend": "x"}}
            for n in names
        ]  # fmt: skip


def _search(tmp_path, tiny_bert_dir, ubmec_texts, candidates, hooks, **settings):
    from bertcompress.compression.apply import compress_and_save

    final = _final_model(tiny_bert_dir)
    batches = [dict(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=torch.zeros(
        len(b["input_ids"]), dtype=torch.long)) for b in load_artifact_batches(final, ubmec_texts[:24])]  # fmt: skip
    cfg = OmegaConf.create(
        {
            "name": "auto",
            "pruning": None,
            "quantization": {
                "_target_": "bertcompress.compression.auto.AutoQuantization",
                "candidates": {"transformer": candidates},
                **settings,
            },
        }
    )
    return compress_and_save(final, cfg, tmp_path / "art", batches, search=(hooks.score, hooks.time))


def test_the_fastest_candidate_within_the_tolerance_wins(tmp_path, tiny_bert_dir, ubmec_texts):
    cands = {"fast_bad": ORT, "mid_ok": {**ORT, "per_channel": True}, "slow_ok": {**ORT, "fuse": True}}
    hooks = FakeHooks({"fp32": 50.0, "fast_bad": 48.0, "mid_ok": 49.6, "slow_ok": 50.0},
                      {"fp32": 10.0, "fast_bad": 2.0, "mid_ok": 4.0, "slow_ok": 5.0})  # fmt: skip
    report = _search(tmp_path, tiny_bert_dir, ubmec_texts, cands, hooks, tolerance=0.01, layer_fallback=False)
    q = report["quantization"]
    assert q["winner"] == "mid_ok" and q["within_budget"] and q["settings"]["per_channel"] is True
    rows = {r["candidate"]: r for r in q["search"]}
    assert rows["fast_bad"]["within_tolerance"] is False and rows["mid_ok"]["within_tolerance"] is True
    assert rows["mid_ok"]["speedup"] == pytest.approx(2.5) and rows["fp32"]["speedup"] == pytest.approx(1.0)
    assert rows["fast_bad"]["relative_loss"] == pytest.approx(0.04)
    assert hooks.timed == [["fp32", "fast_bad", "mid_ok", "slow_ok"]]  # one interleaved round, fp32 in it
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert manifest["format"] == "onnx" and manifest["compression_applied"]["candidate"] == "mid_ok"
    # a larger tolerance lets the fastest through
    hooks.timed.clear()
    report = _search(tmp_path, tiny_bert_dir, ubmec_texts, cands, hooks, tolerance=0.05, layer_fallback=False)
    assert report["quantization"]["winner"] == "fast_bad"


def test_per_layer_fallback_keeps_the_most_sensitive_group_in_fp32(tmp_path, tiny_bert_dir, ubmec_texts):
    """The tiny BERT's int8 graph has groups layer.0, layer.1 and the embedding/classifier nodes. Layer 1
    alone costs 3 points and layer 0 alone 0.5, so keeping layer.1 in fp32 is the fix the search finds."""

    def fallback(name: str, manifest: dict) -> float:
        excluded = manifest["compression_applied"]["settings"].get("nodes_to_exclude", [])
        bad = {"layer.1": 3.0, "layer.0": 0.5}
        quantized_groups = {g for g in bad if not any(f"layer.{g[-1]}/" in n for n in excluded)}
        return 50.0 - sum(bad[g] for g in quantized_groups)

    hooks = FakeHooks({"fp32": 50.0, "fast": 46.5}, {"fp32": 10.0, "fast": 2.0}, fallback)
    report = _search(tmp_path, tiny_bert_dir, ubmec_texts, {"fast": ORT}, hooks, tolerance=0.02, max_fallback_groups=3)
    q = report["quantization"]
    rows = {r["candidate"]: r for r in q["search"]}
    sens = rows["fast"]["sensitivity"]
    assert (
        list(sens)[0] == "layer.1" and sens["layer.1"] == pytest.approx(3.0) and sens["layer.0"] == pytest.approx(0.5)
    )
    assert q["winner"] == "fast+fp32[layer.1]" and q["within_budget"]
    assert all("layer.1/" in n for n in q["settings"]["nodes_to_exclude"]) and q["settings"]["nodes_to_exclude"]
    assert len(hooks.timed) == 2 and hooks.timed[1][0] == "fp32"  # the fallback is timed against fp32 again


def test_nothing_within_the_budget_ships_fp32_and_says_so(tmp_path, tiny_bert_dir, ubmec_texts):
    hooks = FakeHooks({"fp32": 50.0, "a": 40.0}, {"fp32": 10.0, "a": 2.0}, lambda n, m: 40.0)
    report = _search(tmp_path, tiny_bert_dir, ubmec_texts, {"a": ORT}, hooks, tolerance=0.01, layer_fallback=False)
    q = report["quantization"]
    assert q["within_budget"] is False and q["winner"] == "fp32"
    assert json.loads((tmp_path / "art" / "manifest.json").read_text())["format"] == "hf"


def test_a_candidate_the_backend_cannot_build_is_skipped_and_named(tmp_path, tiny_bert_dir, ubmec_texts, monkeypatch):
    import bertcompress.compression.quant_openvino as qov
    from bertcompress.compression.quant_config import QuantizationError

    def missing():
        raise QuantizationError("backend 'openvino' is not installed (test): pip install -e '.[openvino]'")

    monkeypatch.setattr(qov, "_openvino", missing)
    ov = {"mode": "static", "backend": "openvino", "calibration_batches": 1}
    hooks = FakeHooks({"fp32": 50.0, "ort": 50.0, "ov": 50.0}, {"fp32": 10.0, "ort": 5.0, "ov": 1.0})
    report = _search(tmp_path, tiny_bert_dir, ubmec_texts, {"ov": ov, "ort": ORT}, hooks, layer_fallback=False)
    rows = {r["candidate"]: r for r in report["quantization"]["search"]}
    assert rows["ov"]["status"].startswith("skipped") and "pip install" in rows["ov"]["status"]
    assert report["quantization"]["winner"] == "ort"


def test_bad_auto_settings_are_refused_naming_the_key():
    from bertcompress.compression.auto import AutoQuantization

    with pytest.raises(ValueError, match="tolerance"):
        AutoQuantization(tolerance=1.5, candidates={"static": {"a": ORT}})
    with pytest.raises(ValueError, match=r"candidates\.static\.a"):
        AutoQuantization(candidates={"static": {"a": {"mode": "static", "backend": "torch_ao"}}})
    with pytest.raises(ValueError, match="candidates is empty"):
        AutoQuantization(candidates={})


@requires_ubmec
def test_auto_in_a_run_records_the_search_and_ships_the_winner(tmp_path, tiny_run_overrides):
    from bertcompress.pipeline import run

    four = (  # one candidate of each backend (the whole declared set is a minute of a tiny run)
        "{ort_dynamic_fused: {mode: dynamic, backend: onnxruntime, quantize_embeddings: true, fuse: true}, "
        "ort_static_minmax: {mode: static, backend: onnxruntime, observer: minmax, calibration_batches: 2}, "
        "torch_ao_dynamic: {mode: dynamic, backend: torch_ao}, "
        "openvino_int8: {mode: static, backend: openvino, calibration_batches: 2}}"
    )
    overrides = ["compression=auto", "compression.quantization.qat=null", "~compression.quantization.candidates",
                 f"+compression.quantization.candidates={{transformer: {four}}}"]  # fmt: skip
    results = run(compose([*tiny_run_overrides, *overrides], tmp_path))
    q = results["compression"]["quantization"]
    rows = {r["candidate"]: r for r in q["search"]}
    declared = results["config"]["compression"]["quantization"]["candidates"]["transformer"]
    assert set(declared) <= set(rows) and len(declared) == 4 and rows["fp32"]["status"] == "reference"
    for row in q["search"]:
        assert "test" not in json.dumps(row)  # candidates are scored on validation only
        if row["status"] in {"built", "winner"}:
            assert row["val_macro_f1"] >= 0 and row["p50_ms"] > 0 and row["throughput_seq_s"] > 0 and row["size_mb"] > 0
    bench = results["benchmark"]  # the shipped artifact is benchmarked like any other, with what ran it
    assert (
        bench["speedup"] > 0 and bench["execution"]["backend"] and bench["reference"]["execution"]["backend"] == "torch"
    )
    if q["within_budget"]:  # the artifact evaluated after the search is the winner: the same val figure
        assert results["final_val"]["macro_f1"] == pytest.approx(rows[q["winner"]]["val_macro_f1"])


def test_auto_under_ddp_is_refused_before_any_training(tmp_path):
    from bertcompress.validate import validate

    cfg = compose(["compression=auto", "hardware=ddp", "trainer.accelerator=cpu"], tmp_path)
    with pytest.raises(ValueError, match="compression=auto searches"):
        validate(cfg)
