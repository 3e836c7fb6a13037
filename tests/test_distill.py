"""Distillation: logit cache, id alignment, vocabulary reduction, every student config, bad configs."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from omegaconf import OmegaConf

from bertcompress.distill.soft_targets import SoftTargetCallback, TeacherLogitCache
from bertcompress.pipeline import run
from tests.conftest import CONF_DIR, compose, requires_ubmec

STUDENTS = sorted(p.stem for p in (CONF_DIR / "student").glob("*.yaml") if p.stem != "none" and p.stem[0] != "_")
# hub students: those that start from the shared hub base (student/_hf.yaml)
HUB_STUDENTS = {s for s in STUDENTS if "_hf" in OmegaConf.load(CONF_DIR / "student" / f"{s}.yaml").get("defaults", [])}


def test_soft_targets_are_aligned_by_id_not_position():
    logits = {i: torch.tensor([float(i), -float(i)]) for i in (5, 17, 3, 99)}
    cb = SoftTargetCallback(logits_by_id=logits)
    batch = {"id": torch.tensor([99, 3, 17]), "input_ids": torch.zeros(3, 4, dtype=torch.long)}
    cb.on_train_batch_start(None, None, batch, 0)
    assert batch["teacher_logits"].tolist() == [[99.0, -99.0], [3.0, -3.0], [17.0, -17.0]]
    with pytest.raises(KeyError, match=r"No cached teacher logits for example ids \[42\]"):
        cb.on_train_batch_start(None, None, {"id": torch.tensor([42]), "input_ids": torch.zeros(1, 1)}, 0)


@requires_ubmec
def test_logits_stay_aligned_when_the_loader_shuffles(tiny_bert_dir):
    """The student sees, for each example, exactly the teacher logits of that example id."""
    import lightning as L
    from transformers import AutoTokenizer

    from bertcompress.data.corpora import UBMECDataModule
    from bertcompress.data.encoding import TextEncoder
    from bertcompress.distill.module import DistillStudent

    dm = UBMECDataModule(
        str(__import__("tests.conftest").conftest.UBMEC), limit_train=40, limit_val=8, limit_test=8, batch_size=8
    )
    dm = dm.view(TextEncoder(AutoTokenizer.from_pretrained(tiny_bert_dir), 16))
    logits = {i: torch.tensor([float(i), 0, 0, 0, 0, 0]) for i in dm.ids("train")}
    seen = []

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(1, 6)

        def forward(self, batch):
            if "teacher_logits" in batch:
                seen.append((batch["id"].tolist(), batch["teacher_logits"][:, 0].tolist()))
            return self.w(batch["input_ids"][:, :1].float())

    module = DistillStudent(Probe(), dm.labels, optimizer=lambda p: torch.optim.SGD(p, lr=0.0))
    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[SoftTargetCallback(logits_by_id=logits)],
        limit_val_batches=0,
    )
    trainer.fit(module, datamodule=dm)
    assert len(seen) == 5
    order = [i for ids, _ in seen for i in ids]
    assert order != sorted(order) and order != dm.ids("train")  # really shuffled
    for ids, firsts in seen:
        assert firsts == [float(i) for i in ids]


def _cache(tmp_path, teacher_dir, dm, encoder):
    return TeacherLogitCache(tmp_path / "cache", "tiny", teacher_dir, dm, encoder)


@requires_ubmec
def test_logit_cache_hit_and_invalidation(tmp_path, tiny_bert_dir):
    import shutil

    from transformers import AutoTokenizer

    from bertcompress.data.corpora import UBMECDataModule
    from bertcompress.data.encoding import TextEncoder
    from bertcompress.models.classifier import TeacherFinetune
    from tests.conftest import UBMEC

    teacher_dir = tmp_path / "teacher"
    shutil.copytree(tiny_bert_dir, teacher_dir)
    dm = UBMECDataModule(str(UBMEC), limit_train=24, limit_val=8, limit_test=8)
    dm.setup()
    enc = TextEncoder(AutoTokenizer.from_pretrained(teacher_dir), 16)
    teacher = TeacherFinetune(teacher_dir, dm.labels)
    first = _cache(tmp_path, teacher_dir, dm, enc)
    logits = first.load_or_compute(teacher)
    assert not first.hit and first.path.is_file() and set(logits) == set(dm.ids("train")) | set(dm.ids("val"))
    second = _cache(tmp_path, teacher_dir, dm, enc)
    again = second.load_or_compute(teacher)
    assert second.hit and second.path == first.path
    assert all(torch.equal(logits[i], again[i]) for i in logits)
    # a changed teacher checkpoint: a different key, a miss
    teacher.model.save_pretrained(teacher_dir)  # re-saved with a fresh (random) classifier head
    third = _cache(tmp_path, teacher_dir, dm, enc)
    assert third.path != first.path
    third.load_or_compute(teacher)
    assert not third.hit


@requires_ubmec
def test_teacher_with_another_label_set_is_rejected(tmp_path, tiny_bert_dir):
    from transformers import AutoTokenizer

    from bertcompress.data.corpora import UBMECDataModule
    from bertcompress.data.encoding import TextEncoder
    from bertcompress.models.classifier import TeacherFinetune
    from tests.conftest import UBMEC

    dm = UBMECDataModule(str(UBMEC), limit_train=16, limit_val=8, limit_test=8)
    dm.setup()
    enc = TextEncoder(AutoTokenizer.from_pretrained(tiny_bert_dir), 16)
    teacher = TeacherFinetune(tiny_bert_dir, ["negative", "neutral", "positive"])
    with pytest.raises(ValueError, match=r"3 classes but the data has 6 labels"):
        _cache(tmp_path, tiny_bert_dir, dm, enc).load_or_compute(teacher)


def _assert_same_predictions(model, tok, reduced_model, reduced_tok, texts):
    a = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    b = reduced_tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        la = model(input_ids=a["input_ids"], attention_mask=a["attention_mask"]).logits
        lb = reduced_model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    assert torch.equal(la.argmax(-1), lb.argmax(-1))
    assert torch.allclose(la, lb, atol=1e-5)


def test_vocabulary_reduction_preserves_predictions_wordpiece(tiny_bert_dir, ubmec_texts):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bertcompress.models.vocab import reduce_vocabulary

    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=6).eval()
    corpus = ubmec_texts[:300]
    reduced, rtok, rep = reduce_vocabulary(copy.deepcopy(model), tok, corpus)
    assert rep.new_vocab_size < rep.old_vocab_size and rep.new_params < rep.old_params
    assert len(rtok) == reduced.config.vocab_size == rep.new_vocab_size
    _assert_same_predictions(model, tok, reduced, rtok, corpus[:64])


def test_vocabulary_reduction_preserves_predictions_unigram(me5_dir, ubmec_texts, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bertcompress.models.vocab import reduce_vocabulary

    tok = AutoTokenizer.from_pretrained(me5_dir)
    model = AutoModelForSequenceClassification.from_pretrained(me5_dir, num_labels=6).eval()
    model.bert.encoder.layer = model.bert.encoder.layer[:2]  # 2 layers are enough to compare
    corpus = ubmec_texts[:400]
    reduced, rtok, rep = reduce_vocabulary(model, tok, corpus)
    assert rep.old_vocab_size == 250037 and rep.new_vocab_size < 10_000
    full = AutoModelForSequenceClassification.from_pretrained(me5_dir, num_labels=6).eval()
    full.bert.encoder.layer = full.bert.encoder.layer[:2]
    full.classifier.load_state_dict(reduced.classifier.state_dict())
    full.bert.pooler.load_state_dict(reduced.bert.pooler.state_dict())
    _assert_same_predictions(full, tok, reduced, rtok, corpus[:48])
    # the reduced pair saves and reloads consistently
    reduced.save_pretrained(tmp_path)
    rtok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(corpus[0])["input_ids"] == rtok(corpus[0])["input_ids"]


def _student_overrides(student, tiny_bert_dir):
    extra = [f"student={student}", "debug=fdr"]
    if student in HUB_STUDENTS:
        extra.append(f"student.hub_id={tiny_bert_dir}")
    if student in {"teacher_6l", "teacher_truncated"}:  # the tiny teacher has 2 layers
        extra.append("student.num_layers=1")
    return extra


@requires_ubmec
@pytest.mark.parametrize("student", STUDENTS)
def test_every_student_config_runs_a_fast_dev_run_distillation(student, tmp_path, tiny_run_overrides, tiny_bert_dir):
    results = run(compose([*tiny_run_overrides, *_student_overrides(student, tiny_bert_dir)], tmp_path))
    assert results["final_model"] == "student" and results["student"]["name"] == student
    block = results["student"]
    assert block["kd"] is True and block["params"]["total"] > 0
    assert set(block["test"]["per_class"]) == set(results["data"]["labels"])
    assert results["retention"]["macro_f1"] == pytest.approx(
        block["test"]["macro_f1"] / results["teacher"]["test"]["macro_f1"]
    )
    manifest = json.loads((tmp_path / "run" / "artifact" / "manifest.json").read_text())
    assert manifest["label_names"] == results["data"]["labels"] and manifest["model_name"] == student
    if student in {"teacher_6l", "teacher_truncated"}:
        assert block["params"]["total"] < results["teacher"]["params"]["total"]


@requires_ubmec
def test_distillation_run_logs_kd_and_ce_and_reuses_the_logit_cache(tmp_path, tiny_run_overrides):
    overrides = [
        *tiny_run_overrides,
        "student=bilstm",
        "student.epochs=1",
        "student.loss.mode=kl",
        "trainer.log_every_n_steps=1",
        "student.loss.alpha=0.5",
    ]
    first = run(compose(overrides, tmp_path))
    assert first["student"]["logit_cache_hit"] is False and first["teacher"]["cache_hit"] is False
    metrics = (tmp_path / "run" / "csv").rglob("metrics.csv")
    header = next(iter(metrics)).read_text().splitlines()[0]
    assert "train/loss_kd" in header and "train/loss_ce" in header
    second = run(compose([*overrides, "student=cnn"], tmp_path))
    assert second["teacher"]["cache_hit"] is True and second["student"]["logit_cache_hit"] is True


@requires_ubmec
def test_no_kd_ablation_and_online_mode_run(tmp_path, tiny_run_overrides):
    ablation = run(compose([*tiny_run_overrides, "student=cnn", "student.kd=false", "debug=fdr"], tmp_path))
    assert ablation["student"]["kd"] is False and ablation["student"]["logit_cache"] is None
    online = run(compose([*tiny_run_overrides, "student=cnn", "student.soft_targets=online", "debug=fdr"], tmp_path))
    assert online["student"]["soft_targets"] == "online" and online["student"]["logit_cache"] is None


@requires_ubmec
def test_fasttext_vectors_as_the_static_embedding(tmp_path, tiny_run_overrides, ubmec_texts):
    words = sorted({w for t in ubmec_texts[:500] for w in t.split()})[:300]
    vec = tmp_path / "tiny.vec"
    vec.write_text(f"{len(words)} 8\n" + "".join(f"{w} " + " ".join(["0.1"] * 8) + "\n" for w in words))
    results = run(
        compose(
            [
                *tiny_run_overrides,
                "student=bilstm",
                "student.embedding.source=fasttext",
                f"student.embedding.vectors={vec}",
                "debug=fdr",
            ],
            tmp_path,
        )
    )
    emb = results["student"]["info"]["embedding"]
    assert emb["source"] == "fasttext" and 0 < emb["words"] <= 300


def test_ensemble_members_share_one_embedding_and_learned_weights_train():
    from bertcompress.models.students import StaticEmbedding, ensemble_student

    emb = StaticEmbedding(torch.randn(50, 8))
    model = ensemble_student(emb, num_labels=3, combine="learned", hidden_size=8, num_filters=4)
    assert all(m.embedding is emb for m in model.members)
    batch = {"input_ids": torch.randint(0, 50, (4, 7)), "attention_mask": torch.ones(4, 7, dtype=torch.long)}
    out = model(batch)
    assert out.shape == (4, 3)
    out.sum().backward()
    assert model.member_logit_weights.grad is not None
    mean = ensemble_student(emb, num_labels=3, combine="mean", hidden_size=8, num_filters=4).eval()
    with torch.no_grad():
        assert torch.allclose(mean(batch), mean.member_logits(batch).mean(0), atol=1e-6)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("student.loss.temperature=0", "temperature T must be > 0"),
        ("student.loss.alpha=1.5", r"alpha must lie in \[0, 1\]"),
        ("student.kind=rnn", "student.kind='rnn'"),
    ],
)
def test_bad_student_config_is_rejected(override, match, tmp_path, tiny_run_overrides):
    with pytest.raises(ValueError, match=match):
        run(compose([*tiny_run_overrides, "student=cnn", override, "debug=fdr"], tmp_path))


def test_unknown_student_names_the_choices(tmp_path):
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match=r"(?s)student/rnn.*Available options.*bilstm"):
        compose(["student=rnn"], tmp_path)


def test_truncation_layers_every_other():
    from bertcompress.models.students import truncation_layers

    assert truncation_layers(12, 6) == [0, 2, 4, 6, 8, 10]
    assert truncation_layers(12, 4) == [0, 3, 6, 9]
    with pytest.raises(ValueError, match=r"must lie in \[1, 12\]"):
        truncation_layers(12, 13)


@requires_ubmec
def test_a_distilled_student_is_trained_once_and_reused_across_compressions(tmp_path, tiny_run_overrides):
    overrides = [*tiny_run_overrides, "student=cnn", "student.epochs=1", "baseline=none"]
    first = run(compose(overrides, tmp_path))
    assert first["student"]["cache_hit"] is False
    second = run(compose([*overrides, "compression=quant"], tmp_path))
    assert second["student"]["cache_hit"] is True and second["student"]["cache_dir"] == first["student"]["cache_dir"]
    assert second["student"]["test"]["macro_f1"] == pytest.approx(first["student"]["test"]["macro_f1"])
    assert second["student"]["train_time_s"] == first["student"]["train_time_s"]  # from the cache's record
    other = run(compose([*overrides, "student.loss.alpha=0.9"], tmp_path))  # another student: trained anew
    assert other["student"]["cache_hit"] is False


@pytest.mark.parametrize("freeze", [False, True])
def test_truncated_student_can_keep_the_teachers_word_embeddings_frozen(freeze, tiny_bert_dir):
    from omegaconf import OmegaConf

    from bertcompress.models.student_builder import build_student

    cfg = OmegaConf.create({"name": "t1", "kind": "truncated", "num_layers": 1, "reduce_vocab": False})
    if freeze:
        cfg.freeze_word_embeddings = True
    bundle = build_student(cfg, tiny_bert_dir, ["a", "b", "c"], ["x y"], max_length=16)
    model = bundle.module.model
    emb = model.get_input_embeddings().weight
    assert emb.requires_grad is not freeze
    others = [p.requires_grad for n, p in model.named_parameters() if p is not emb]
    assert others and all(others)  # the encoder and head still train
    assert ("frozen_word_embeddings" in bundle.info) is freeze
    if freeze:
        assert bundle.info["frozen_word_embeddings"] == emb.numel()


def test_ngram_bag_hashes_match_a_hand_computation_and_ignore_padding():
    from bertcompress.models.students import HashedNgramBag

    bag = HashedNgramBag(buckets=97, dim=4, orders=(1, 2))
    p = bag.PRIME

    def bigram(a, b):  # the formula of the docstring, in Python integers
        return (((a % 97) * p + b) % 97 * p + 2) % 97

    rows = [5 % 97, 7 % 97, 200 % 97, bigram(5, 7), bigram(7, 200)]
    ids, mask = torch.tensor([[5, 7, 200, 0, 0]]), torch.tensor([[1, 1, 1, 0, 0]])
    with torch.no_grad():
        out = bag(ids, mask)
        assert torch.allclose(out[0], bag.table.weight[rows].mean(0), atol=1e-6)
        assert torch.allclose(bag(ids[:, :3], mask[:, :3]), out, atol=1e-6)  # padding changes nothing
        one = bag(torch.tensor([[5]]), torch.tensor([[1]]))  # shorter than a bigram: the unigram alone
        assert torch.allclose(one[0], bag.table.weight[5], atol=1e-6)
    with pytest.raises(ValueError, match="bag_orders"):
        HashedNgramBag(buckets=97, dim=4, orders=())


def test_cnn_bag_student_exports_to_static_int8_onnx(tmp_path, tiny_tokenizer_dir, ubmec_texts):
    """The hashing runs inside the ONNX graph (Mod nodes) on batches of any length, and the int8
    graph computes the fp32 student's function up to quantization noise."""
    import numpy as np
    import onnx
    from transformers import AutoTokenizer

    from bertcompress.artifacts import load_artifact
    from bertcompress.compression.apply import FinalModel, compress_and_save
    from bertcompress.data.encoding import PadCollator, TextEncoder
    from bertcompress.models.students import StaticEmbedding, cnn_student

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    emb = StaticEmbedding(torch.randn(len(tok), 16), padding_idx=tok.pad_token_id)
    student = cnn_student(emb, 6, num_filters=8, bag_buckets=512, bag_dim=8, bag_orders=(1, 2, 3)).eval()
    with torch.no_grad():  # a bag that matters: its features weigh in the logits
        student.bag.table.weight.normal_(0, 1.0)
    labels = ["anger", "disgust", "fear", "joy", "sadness", "surprise"]
    final = FinalModel("cnn_bag", student, TextEncoder(tok, 256), labels)
    texts = ubmec_texts[:40]
    collate = PadCollator(tok)
    ids = final.encoder(texts)
    batches = [collate([{"input_ids": x} for x in ids[i : i + 8]]) for i in range(0, 40, 8)]
    assert len({b["input_ids"].shape[1] for b in batches}) > 1  # the graph must take varying lengths
    quant = {"mode": "static", "backend": "onnxruntime", "quantize_embeddings": True, "calibration_batches": 2}
    cfg = OmegaConf.create(
        {
            "name": "quant_static",
            "pruning": None,
            "quantization": {
                "_target_": "bertcompress.compression.steps.PostTrainingQuantization",
                **quant,
                "observer": "minmax",
            },
        }
    )
    compress_and_save(final, cfg, tmp_path / "art", calibration_loader=batches)
    predictor = load_artifact(tmp_path / "art")
    graph = onnx.load(str(next((tmp_path / "art").glob("*.onnx")))).graph
    assert any(node.op_type == "Mod" for node in graph.node)
    with torch.no_grad():
        fp32 = torch.cat([student(b) for b in predictor.batches(texts)]).numpy()
    int8 = np.concatenate([predictor.logits(b) for b in predictor.batches(texts)])
    assert int8.shape == (40, 6) and np.abs(int8 - fp32).max() < 0.25 * np.abs(fp32).max()


def test_cnn_bag_student_runs_with_its_table_quantized_by_torch_ao():
    """compression=quant with quantize_embeddings: the bag's table becomes a quantized embedding (whose
    ``weight`` is a method, not a tensor) and the student still computes the fp32 function closely."""
    import copy

    from bertcompress.compression.quant_torch import quantize_torch
    from bertcompress.models.students import StaticEmbedding, cnn_student

    torch.manual_seed(0)
    student = cnn_student(StaticEmbedding(torch.randn(2000, 16)), 6, num_filters=8, bag_buckets=4096, bag_dim=8)
    batch = {"input_ids": torch.randint(0, 2000, (4, 20)), "attention_mask": torch.ones(4, 20, dtype=torch.long)}
    with torch.no_grad():
        fp32 = student.eval()(batch)
        quantized, report = quantize_torch(copy.deepcopy(student), "dynamic", "torch_ao", quantize_embeddings=True)
        assert report["quantized_modules"]["Embedding"] == 2  # the word table and the n-gram table
        assert (quantized(batch) - fp32).abs().max() < 0.05


@requires_ubmec
def test_student_seeds_share_one_teacher_and_one_set_of_teacher_logits(tmp_path, tiny_run_overrides):
    """``student.seed`` re-seeds the student only: a second seed reuses the cached teacher and its logits and
    trains another student; the first seed again is a student-cache hit; the report averages over them."""
    from bertcompress.report.build import make_report

    base = [*tiny_run_overrides, "student=cnn", "student.epochs=2", "baseline=none", "benchmark.enabled=false"]
    runs = {}
    for seed in (1, 2, 1):
        cfg = compose(
            [*base, f"student.seed={seed}", f"paths.output_dir={tmp_path / 'runs' / str(len(runs))}"], tmp_path
        )
        runs[len(runs)] = run(cfg)
    first, second, again = runs[0], runs[1], runs[2]
    assert first["teacher"]["cache_hit"] is False and second["teacher"]["cache_hit"] is True
    assert second["student"]["logit_cache_hit"] is True and second["student"]["cache_hit"] is False
    assert first["student"]["cache_dir"] != second["student"]["cache_dir"]
    assert again["student"]["cache_hit"] is True and again["student"]["cache_dir"] == first["student"]["cache_dir"]
    assert first["student"]["best_val_macro_f1"] == again["student"]["best_val_macro_f1"]
    agg = make_report(tmp_path / "runs")["summary"]
    row = agg[agg["student"] == "cnn"].iloc[0]
    assert row["n_seeds"] == 2 and row["seeds"] == "1,2" and row["runs"] == 3
