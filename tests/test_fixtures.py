"""The test fixtures are the same in every pytest run: the tiny tokenizers are committed files, and the
tiny models are built under a fixed seed whatever ran before them."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from tests.conftest import FIXTURES, _save_tiny


def test_tiny_models_do_not_depend_on_what_ran_before(tmp_path):
    first = _save_tiny("bert", FIXTURES / "tiny_tokenizer", tmp_path / "a")
    torch.randn(1000)  # the global RNG moves, as other tests move it
    second = _save_tiny("bert", FIXTURES / "tiny_tokenizer", tmp_path / "b")
    a, b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_tiny_tokenizer_is_the_committed_fixture(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    assert tiny_tokenizer_dir == FIXTURES / "tiny_tokenizer"
    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    assert len(tok) == 800 and tok.pad_token == "[PAD]"
    # the ids of the committed file (a tokenizer trained anew in each run gave other ids from run to run)
    assert tok("আমি আজ খুব খুশি")["input_ids"] == [2, 353, 356, 438, 365, 516, 3]
