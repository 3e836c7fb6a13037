"""The TF-IDF + logistic-regression floor in numpy: scikit-learn's ``TfidfVectorizer`` (char, char_wb or
word n-grams; lower-casing, sublinear tf, l2 norm) and multinomial ``LogisticRegression`` recomputed from
the saved vocabulary, idf and coefficients, without scikit-learn
(https://scikit-learn.org/stable/modules/feature_extraction.html#tfidf-term-weighting)."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bertcompress_runtime.manifest import MAX_JSON_BYTES, artifact_file

_WHITE_SPACES = re.compile(r"\s\s+")
ANALYZERS = ("char", "char_wb", "word")


def char_wb_ngrams(text: str, lo: int, hi: int) -> list[str]:
    """n-grams inside word boundaries, each word padded with a space (scikit-learn's ``char_wb``)."""
    out = []
    for w in _WHITE_SPACES.sub(" ", text).split():
        w = " " + w + " "
        for n in range(lo, hi + 1):
            offset = 0
            out.append(w[offset : offset + n])
            while offset + n < len(w):
                offset += 1
                out.append(w[offset : offset + n])
            if offset == 0:  # a short word (len < n) counts once
                break
    return out


def char_ngrams(text: str, lo: int, hi: int) -> list[str]:
    """Character n-grams over the whole text (scikit-learn's ``char``)."""
    text = _WHITE_SPACES.sub(" ", text)
    return [text[i : i + n] for n in range(lo, min(hi + 1, len(text) + 1)) for i in range(len(text) - n + 1)]


def word_ngrams(text: str, lo: int, hi: int, pattern: str) -> list[str]:
    """Word n-grams of the tokens ``pattern`` finds (scikit-learn's ``word``)."""
    tokens = re.findall(pattern, text)
    return [
        " ".join(tokens[i : i + n]) for n in range(lo, min(hi + 1, len(tokens) + 1)) for i in range(len(tokens) - n + 1)
    ]


class TfidfModel:
    """A saved TF-IDF + LR artifact: raw texts in, (N, C) logits (log-probabilities) out.

    Raises:
        ValueError: an analyzer the runtime does not reproduce (``subword`` needs the training package).
        ArtifactError: a vocabulary or weight file outside the dir, not a regular file, or too large.
    """

    def __init__(self, directory: str | Path, manifest: dict):
        directory = Path(directory)
        params = manifest["params"]
        self.analyzer = params["analyzer"]
        if self.analyzer not in ANALYZERS:
            raise ValueError(
                f"{directory}: tfidf analyzer {self.analyzer!r} is not in the runtime (it reproduces {ANALYZERS}); "
                "load it with the training package (bertcompress)"
            )
        self.lo, self.hi = (int(n) for n in params["ngram_range"])
        vec = manifest.get("vectorizer", {})
        self.lowercase = bool(vec.get("lowercase", True))
        self.sublinear = bool(vec.get("sublinear_tf", True))
        self.token_pattern = vec.get("token_pattern", r"(?u)\b\w\w+\b")
        vocabulary = artifact_file(
            directory,
            manifest.get("vocabulary", "vocabulary.json"),
            "manifest.json: vocabulary",
            MAX_JSON_BYTES["vocabulary"],
        )
        terms = json.loads(vocabulary.read_text(encoding="utf-8"))
        self.vocabulary = {t: i for i, t in enumerate(terms)}
        with np.load(artifact_file(directory, manifest["weights"], "manifest.json: weights"), allow_pickle=False) as w:
            self.idf, self.coef, self.intercept = w["idf"], w["coef"], w["intercept"]

    def _grams(self, text: str) -> list[str]:
        if self.lowercase:
            text = text.lower()
        if self.analyzer == "char_wb":
            return char_wb_ngrams(text, self.lo, self.hi)
        if self.analyzer == "char":
            return char_ngrams(text, self.lo, self.hi)
        return word_ngrams(text, self.lo, self.hi, self.token_pattern)

    def features(self, texts: Sequence[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per text: the column ids and l2-normalised tf-idf values of its known n-grams."""
        cols, vals = [], []
        for text in texts:
            counts = Counter(self.vocabulary[g] for g in self._grams(text) if g in self.vocabulary)
            c = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            if self.sublinear:
                tf = np.log(tf) + 1.0
            v = tf * self.idf[c]
            norm = np.sqrt((v * v).sum())
            cols.append(c)
            vals.append(v / norm if norm > 0 else v)
        return cols, vals

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(N, C) probabilities, as ``LogisticRegression.predict_proba``."""
        cols, vals = self.features(texts)
        scores = np.stack([self.coef[:, c] @ v for c, v in zip(cols, vals, strict=True)]) + self.intercept
        if self.coef.shape[0] == 1:  # binary: one decision function, logistic
            p1 = 1.0 / (1.0 + np.exp(-scores[:, 0]))
            return np.stack([1.0 - p1, p1], axis=1)
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """(N, C) log-probabilities (the training package's ``TfidfLR.logits``)."""
        if not len(texts):
            return np.zeros((0, self.coef.shape[0] if self.coef.shape[0] > 1 else 2), dtype=np.float32)
        return np.log(np.clip(self.predict_proba(texts), 1e-12, 1.0)).astype(np.float32)
