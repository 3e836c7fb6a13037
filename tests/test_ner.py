"""task=ner: the CoNLL reader and its errors, subword label alignment, per-token KD, seqeval metrics,
and tiny end-to-end runs through the same pipeline, compression and report as classification."""

from __future__ import annotations

import json

import pytest
import torch

from bertcompress.data.conll import TokenEncoder, align_labels, read_conll, word_predictions
from bertcompress.data.conll_datamodule import ConllDataModule
from bertcompress.data.readers import DataError
from bertcompress.distill.losses import SoftTargetLoss
from bertcompress.distill.soft_targets import scatter_token_targets
from bertcompress.metrics import ner_metrics
from tests.conftest import CONLL as CONLL_DIR
from tests.conftest import compose, requires_conll

CONLL_TEXT = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O


Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP B-LOC
"""


def _write(tmp_path, text, name="data.txt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reader_handles_docstart_and_blank_lines(tmp_path):
    sentences = read_conll(_write(tmp_path, CONLL_TEXT))
    assert [s.tokens for s in sentences] == [
        ["EU", "rejects", "German", "call", "."],
        ["Peter", "Blackburn"],
        ["BRUSSELS"],
    ]
    assert [s.tags for s in sentences][1] == ["B-PER", "I-PER"]
    assert [s.line for s in sentences] == [3, 10, 15]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("EU NNP B-NP B-ORG\nrejects\n", "data.txt:2: malformed line 'rejects'"),
        ("EU NNP B-NP B-ORG\nrejects VBZ B-VP X-FOO\n", "data.txt:2: tag 'X-FOO' is not in the BIO scheme"),
        ("EU NNP B-NP ORG\n", "data.txt:1: tag 'ORG' is not in the BIO scheme"),
        ("", "no sentence found"),
        ("-DOCSTART- -X- -X- O\n\n\n", "no sentence found"),
    ],
)
def test_reader_errors_name_file_and_line(tmp_path, text, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        read_conll(_write(tmp_path, text))


def test_tags_missing_from_the_train_label_set_name_the_file_and_line(tmp_path):
    train = _write(tmp_path, "EU NNP B-NP B-ORG\n\nrejects VBZ B-VP O\n", "train.txt")
    test = _write(tmp_path, "a b c O\n\nParis NNP B-NP B-LOC\n", "test.txt")
    dm = ConllDataModule(str(train), test_file=str(test), val_size=1, name="t")
    with pytest.raises(DataError, match=r"test.txt:3: tags \['B-LOC'\] are not in the label set"):
        dm.setup()


def test_align_labels_first_subword_carries_the_tag():
    # [CLS] Black ##burn Peter [SEP]: words 0 (2 subwords), 1
    assert align_labels([None, 0, 0, 1, None], [7, 8]) == [-100, 7, -100, 8, -100]
    # a word split in three, then a single-piece word
    assert align_labels([None, 0, 0, 0, 1, None], [3, 0]) == [-100, 3, -100, -100, 0, -100]


def test_alignment_on_hand_made_sentences(tiny_ner_bert_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_ner_bert_dir)
    enc = TokenEncoder(tok, max_length=32)
    sentences = [["Blackburn", "won", "in", "Brussels"], ["Xqzzyv"]]
    ids, labels = enc.encode(sentences, [[7, 0, 0, 1], [3]])
    for words, row_ids, row_labels, tags in zip(sentences, ids, labels, [[7, 0, 0, 1], [3]], strict=True):
        pieces = tok.convert_ids_to_tokens(row_ids)
        assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]"
        assert row_labels[0] == row_labels[-1] == -100
        kept = [lab for lab in row_labels if lab != -100]
        assert kept == tags  # one label per word, at its first subword
        starts = [p for p, lab in zip(pieces, row_labels, strict=True) if lab != -100]
        assert all(not p.startswith("##") for p in starts)
        assert len(row_ids) > len(words) + 2 or all(lab != -100 for lab in row_labels[1:-1])


def test_word_predictions_fill_truncated_words_with_o():
    assert word_predictions([[-100, 0, -100, 0, -100]], [[5, 1, 2, 3, 4]], [3], fill=0) == [[1, 3, 0]]


def test_per_token_kd_loss_matches_hand_computation_and_ignores_minus_100():
    torch.manual_seed(0)
    s, t = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    labels = torch.tensor([[-100, 1, -100, 2], [-100, 0, -100, -100]])
    loss = SoftTargetLoss("kl", temperature=2.0, alpha=0.5)
    total, kd, ce = loss(s, t, labels)
    keep = labels != -100
    zs, zt, y = s[keep], t[keep], labels[keep]  # 3 tokens
    p_t = torch.softmax(zt / 2, -1)
    hand_kd = (p_t * (p_t.log() - torch.log_softmax(zs / 2, -1))).sum(-1).mean() * 4
    hand_ce = -torch.log_softmax(zs, -1)[torch.arange(3), y].mean()
    assert torch.allclose(kd, hand_kd, atol=1e-6)
    assert torch.allclose(ce, hand_ce, atol=1e-6)
    assert torch.allclose(total, 0.5 * hand_kd + 0.5 * hand_ce, atol=1e-6)
    # the ignored positions do not matter: change them and the loss stays the same
    s2, t2 = s.clone(), t.clone()
    s2[~keep], t2[~keep] = 100.0, -100.0
    assert torch.allclose(loss(s2, t2, labels)[0], total, atol=1e-6)
    # a teacher mask drops tokens from the KD term only
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    _, kd_masked, ce_masked = loss(s, t, labels, mask)
    sel = keep & mask
    p = torch.softmax(t[sel] / 2, -1)
    hand = (p * (p.log() - torch.log_softmax(s[sel] / 2, -1))).sum(-1).mean() * 4
    assert torch.allclose(kd_masked, hand, atol=1e-6) and torch.allclose(ce_masked, hand_ce, atol=1e-6)


def test_scatter_token_targets_places_word_logits_at_first_subwords():
    labels = torch.tensor([[-100, 3, -100, 0, -100], [-100, 1, -100, -100, -100]])
    rows = [torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[5.0, 6.0], [7.0, 8.0]])]  # row 1: 2 words, 1 seen
    z, mask = scatter_token_targets(rows, labels)
    assert z.shape == (2, 5, 2)
    assert z[0, 1].tolist() == [1.0, 2.0] and z[0, 3].tolist() == [3.0, 4.0] and z[1, 1].tolist() == [5.0, 6.0]
    assert mask.tolist() == [[False, True, False, True, False], [False, True, False, False, False]]


def test_ner_metrics_entity_level():
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    true = [[1, 2, 0, 3], [3, 4]]
    pred = [[1, 0, 0, 3], [3, 4]]  # PER boundary wrong: 2 of 3 entities right, 3 predicted
    m = ner_metrics(true, pred, names)
    assert m["precision"] == pytest.approx(200 / 3) and m["recall"] == pytest.approx(200 / 3)
    assert m["per_type"]["LOC"]["f1"] == 100.0 and m["per_type"]["PER"]["f1"] == 0.0
    assert m["accuracy"] == pytest.approx(100 * 5 / 6)
    with pytest.raises(ValueError, match="sentence 0"):
        ner_metrics([[1, 2]], [[1]], names)


@requires_conll
def test_conll2003_datamodule_reads_the_real_files(tmp_path):
    import hydra

    cfg = compose(["task=ner", "data.limit_train=50", "data.limit_val=10", "data.limit_test=10"], tmp_path)
    dm = hydra.utils.instantiate(cfg.data)
    dm.setup()
    assert dm.labels[0] == "O" and set(dm.labels) == {"O"} | {
        f"{p}-{t}" for p in "BI" for t in ("PER", "ORG", "LOC", "MISC")
    }
    assert dm.texts("train")[0] == ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."]
    assert len(dm.label_ids("val")) == 10 and dm.task == "ner"


def _run(overrides, tmp_path):
    from bertcompress.pipeline import run

    return run(compose(overrides, tmp_path))


@requires_conll
def test_ner_teacher_student_quant_end_to_end(tiny_ner_overrides, tmp_path, capsys):
    """Teacher fine-tune, per-token KD into a 1-layer truncated student, dynamic int8, benchmark, Buuri
    table, report rows: the classification code paths with task=ner."""
    r = _run([*tiny_ner_overrides, "student=teacher_truncated", "student.num_layers=1", "student.epochs=1",
              "compression=quant"], tmp_path)  # fmt: skip
    assert r["task"] == "ner" and r["headline_metric"] == "f1"
    for block in (r["teacher"]["test"], r["student"]["test"], r["final_test"]):
        assert {"f1", "precision", "recall", "accuracy", "per_type"} <= set(block)
        assert block["n"] == 40
    assert r["student"]["logit_cache"] and r["student"]["logit_cache_hit"] is False
    assert r["compression"]["quantization"]["quantized_modules"]["Linear"] > 0
    # compression=quant smooths every Linear first (SmoothQuant), calibrated on token-classification batches
    assert (
        r["compression"]["quantization"]["smoothquant"]["layers"]
        == r["compression"]["quantization"]["quantized_modules"]["Linear"]
    )
    manifest = json.loads((tmp_path / "run" / "artifact" / "manifest.json").read_text())
    assert manifest["task"] == "ner" and manifest["label_names"][0] == "O"
    table = r["inference_val"]["final"]
    assert table["samples"] == 20 and table["batch_size"] == 1
    assert {"accuracy", "precision", "recall", "f1", "total_time_s", "samples_per_s", "latency_per_sample_ms"} <= set(
        table
    )
    assert r["f1"] == r["final_test"]["f1"] and "f1" in r["retention"]
    assert r["speedup"] > 0 and "baseline" not in r
    (tmp_path / "run").rename(tmp_path / "run_quant")  # the next run writes its own run dir
    # the console scripts read the artifact's task: tag whitespace-split words; benchmark on a CoNLL file
    from bertcompress import cli

    artifact = str(tmp_path / "run_quant" / "artifact")
    capsys.readouterr()  # drop what the run printed
    assert cli.predict([artifact, "EU rejects German call", "--json"]) == 0
    tagged = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert tagged["tokens"] == ["EU", "rejects", "German", "call"] and len(tagged["tags"]) == 4
    assert set(tagged["tags"]) <= set(manifest["label_names"])
    out = tmp_path / "bench.json"
    test_file = str(CONLL_DIR / "test.txt")
    assert (
        cli.bench([artifact, "--data", test_file, "--limit", "30", "--runs", "3", "--warmup", "1", "--out", str(out)])
        == 0
    )
    bench = json.loads(out.read_text())
    assert bench["test"]["n"] == 30 and "f1" in bench["test"] and "entity-F1" in capsys.readouterr().out
    # the teacher's per-token logits were cached per sentence: a second student reuses them
    r2 = _run([*tiny_ner_overrides, "student=bilstm", "student.epochs=1", "student.model.hidden_size=16",
               "compression=none"], tmp_path)  # fmt: skip
    assert r2["student"]["logit_cache_hit"] is True
    assert r2["teacher"]["cache_hit"] is True and r2["final_test"]["n"] == 40

    # the NER results render as report rows: entity F1 column, retention on entity F1
    from bertcompress.report.collect import load_runs
    from bertcompress.report.tables import aggregate, display_table

    runs = load_runs(tmp_path)
    assert set(runs["task"]) == {"ner"} and runs.attrs["jobs"] == 2
    teacher_rows = runs[runs["derived"]]  # the shared fine-tuned teacher, once, in Table 4
    assert len(teacher_rows) == 1 and teacher_rows.iloc[0]["entity_f1"] == r["teacher"]["test"]["f1"]
    agg = aggregate(runs)
    distil = display_table(agg, "distillation")
    combo = display_table(agg, "combinations")
    assert "entity F1" in distil.columns and "entity F1" in combo.columns
    assert combo.iloc[0]["entity F1"] == f"{r['f1']:.2f}"
    assert distil.iloc[0]["F1 retention %"] == f"{100 * r2['retention']['f1']:.1f}"
    from bertcompress.report.build import make_report

    out = make_report(tmp_path, tmp_path / "report")
    assert (tmp_path / "report" / "index.html").is_file() and out


@requires_conll
def test_ner_teacher_onnx_int8(tiny_ner_overrides, tmp_path, monkeypatch):
    """ONNX Runtime int8 keeps the sequence axis of the token logits (B, T, C); W&B (offline) gets the
    entity-level figures and the per-type table."""
    import time

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "run"))
    overrides = [o for o in tiny_ner_overrides if o != "logger=csv"]
    r = _run([*overrides, "compression=quant_onnx", "logger=wandb"], tmp_path)
    record_file = next((tmp_path / "run").rglob("offline-run-*/*.wandb"))
    deadline = time.monotonic() + 60
    while b"final_test/f1" not in record_file.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert (
        b"final_test/per_type/" in record_file.read_bytes()
        and b"inference_val/final/samples_per_s" in record_file.read_bytes()
    )
    assert any("per_type" in str(p) for p in record_file.parent.rglob("*.table.json"))
    assert r["benchmark"]["format"] == "onnx" and r["final_test"]["n"] == 40
    # every word of the 40 test sentences is scored, by the trainer's test loop and by the reloaded artifact
    assert r["final_test"]["tokens"] == r["teacher"]["test"]["tokens"] > 40
    assert r["inference_val"]["reference"]["samples"] == 20


@requires_conll
def test_ner_structured_pruning_scores_heads_on_token_logits(tiny_ner_overrides, tmp_path):
    r = _run([*tiny_ner_overrides, "compression=prune_structured", "compression.pruning.finetune_epochs=0"], tmp_path)
    pruning = r["compression"]["pruning"]
    # Michel et al.'s head importance needs the token CE gradient: the path this test exercises
    assert pruning["importance"] == "michel2019" and pruning["structure"]["heads"] == [1, 1]
    assert pruning["params_after"] < pruning["params_before"] and r["final_test"]["n"] == 40


@requires_conll
def test_ner_rejects_what_it_cannot_do(tiny_ner_overrides, tmp_path):
    with pytest.raises(ValueError, match="CNN and ensemble"):
        _run([*tiny_ner_overrides, "student=cnn", "student.epochs=1"], tmp_path)
    with pytest.raises(ValueError, match="task=classification but data=conll2003"):
        _run([*tiny_ner_overrides, "task.name=classification"], tmp_path)
