"""TextBrewer's ``GeneralDistiller`` beside ``bertcompress``'s feature distillation on the same teacher,
student and matches: logits (KL at T) + hidden-state MSE + attention KL/CE of uniformly mapped layers, one
epoch over the same batches, timed one after the other in one process.

    pip install -e ".[peer]"   # textbrewer + tensorboard
    python scripts/textbrewer_peer.py <teacher dir> --texts 1024 --layers 4 --out peer.json

Prints per framework: seconds per epoch and the last 50 steps' mean of each term.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch

from bertcompress.distill.feature_module import model_features, use_eager_attention
from bertcompress.distill.features import feature_terms
from bertcompress.models.students import truncate_layers, truncation_layers
from bertcompress.utils.io import atomic_write_json

TERMS = {
    "hidden": {"_target_": "bertcompress.distill.features.HiddenStateMSE", "weight": 1.0},
    "attn": {"_target_": "bertcompress.distill.features.AttentionLoss", "weight": 1.0, "mode": "kl"},
}


def _batches(tokenizer, texts, batch_size, max_length):
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(
            texts[i : i + batch_size], truncation=True, max_length=max_length, padding=True, return_tensors="pt"
        )
        out.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    return out


def ours(teacher, student, batches, temperature: float) -> dict:
    terms = feature_terms(TERMS, student.config, teacher.config)
    use_eager_attention(student, list(terms.values()))
    opt = torch.optim.AdamW([*student.parameters(), *(p for t in terms.values() for p in t.parameters())], lr=1e-4)
    logs = []
    start = time.perf_counter()
    for b in batches:
        logits, s = model_features(student, b["input_ids"], b["attention_mask"], list(terms.values()), 0)
        with torch.no_grad():
            t_logits, t = model_features(teacher, b["input_ids"], b["attention_mask"], list(terms.values()), 1)
        kd = torch.nn.functional.kl_div(
            torch.log_softmax(logits / temperature, -1), torch.log_softmax(t_logits / temperature, -1),
            reduction="batchmean", log_target=True,
        ) * temperature**2  # fmt: skip
        values = {n: term(s, t, b["attention_mask"]) for n, term in terms.items()}
        loss = kd + sum(values.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        logs.append({"kd": kd.item(), **{n: v.item() for n, v in values.items()}})
    return {
        "seconds": time.perf_counter() - start,
        "last": {k: sum(d[k] for d in logs[-50:]) / len(logs[-50:]) for k in logs[0]},
    }


def peer(teacher, student, batches, temperature: float, pairs) -> dict:
    from textbrewer import DistillationConfig, GeneralDistiller, TrainingConfig

    def adaptor(batch, outputs):
        return {
            "logits": outputs.logits,
            "hidden": list(outputs.hidden_states),
            "attention": list(outputs.attentions),
            "inputs_mask": batch["attention_mask"],
        }

    matches = [{"layer_T": t, "layer_S": s, "feature": "hidden", "loss": "hidden_mse", "weight": 1} for s, t in pairs]
    matches += [
        {"layer_T": t - 1, "layer_S": s - 1, "feature": "attention", "loss": "attention_ce", "weight": 1}
        for s, t in pairs
    ]
    out_dir = Path("/tmp/textbrewer_peer")
    train_config = TrainingConfig(
        device="cpu", log_dir=None, output_dir=str(out_dir), ckpt_frequency=1, ckpt_epoch_frequency=100
    )
    distill_config = DistillationConfig(temperature=temperature, kd_loss_type="ce", intermediate_matches=matches)
    for m in (teacher, student):
        m.config.output_hidden_states = True
        m.config.output_attentions = True
    distiller = GeneralDistiller(train_config, distill_config, teacher, student, adaptor, adaptor)
    opt = torch.optim.AdamW(student.parameters(), lr=1e-4)
    start = time.perf_counter()
    with distiller:
        distiller.train(opt, batches, num_epochs=1)
    return {"seconds": time.perf_counter() - start}


def main() -> None:
    from bertcompress_runtime.cli import read_labelled
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import bertcompress.models  # noqa: F401  (registers the mean-pooling architecture)

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("teacher", help="a fine-tuned teacher dir (e.g. a teachers/ cache entry)")
    p.add_argument("--data", default=None, help="CSV with a text column (default: BANEmo dev texts)")
    p.add_argument("--texts", type=int, default=1024, help="texts in the epoch")
    p.add_argument("--layers", type=int, default=4, help="student layers (truncated teacher)")
    p.add_argument("--batch-size", type=int, default=32, help="texts per batch")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--out", default=None, help="write the figures here as JSON")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    tok = AutoTokenizer.from_pretrained(a.teacher)
    teacher = AutoModelForSequenceClassification.from_pretrained(a.teacher).eval()
    teacher.set_attn_implementation("eager")
    n = teacher.config.num_hidden_layers
    layers = truncation_layers(n, a.layers)
    base = truncate_layers(copy.deepcopy(teacher).train(), layers)
    texts = read_labelled(a.data or "../shared/data/banemo_dev/banemo_dev.csv", "text", "label")[0][: a.texts]
    batches = _batches(tok, texts, a.batch_size, 64)
    pairs = [(m, round(m * n / a.layers)) for m in range(1, a.layers + 1)]
    result = {"texts": len(texts), "layers": layers, "pairs": pairs, "threads": a.threads}
    result["ours"] = ours(teacher, copy.deepcopy(base), batches, 2.0)
    result["textbrewer"] = peer(teacher, copy.deepcopy(base), batches, 2.0, pairs)
    print(json.dumps(result, indent=2))
    if a.out:
        atomic_write_json(a.out, result)


if __name__ == "__main__":
    main()
