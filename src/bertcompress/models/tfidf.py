"""The free classical floor: character n-gram TF-IDF + logistic regression (scikit-learn).

Used as ``baseline=tfidf_lr`` (a row of the baselines table, measured with the same benchmark) and
as a teacher in multi-teacher distillation, where its log-probabilities serve as logits.

On UBMEC (paper split) char 2-5-gram TF-IDF + LR reaches about 55.4% accuracy / 52.3 macro-F1,
level with the fine-tuned mBERT of Rahman et al. 2025. Method: Pedregosa et al. 2011 (scikit-learn),
https://scikit-learn.org/stable/modules/feature_extraction.html#tfidf-term-weighting

``analyzer="subword"`` counts n-grams of a transformer tokenizer's subword ids instead (the bag of
n-grams of fastText, Joulin et al. 2017, arXiv:1607.01759, over SentencePiece/WordPiece pieces): the
same signal in the units a static student reads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bertcompress.utils.io import atomic_dir, atomic_write_json

WEIGHTS = "tfidf.npz"  # idf (F,), coef (C or 1, F), intercept (C or 1,): float64, no pickle
VOCABULARY = "vocabulary.json"  # the F n-grams in column order
MANIFEST = "manifest.json"
TOKENIZER_DIR = "tokenizer"
EPS = 1e-12
ANALYZERS = ("char", "char_wb", "word", "subword")


class TfidfLR:
    """``TfidfVectorizer`` (char n-grams, sublinear tf) followed by multinomial ``LogisticRegression``.

    Args:
        analyzer: ``char_wb`` (n-grams inside word boundaries, default), ``char``, ``word``, or
            ``subword`` (n-grams of the ``tokenizer``'s subword ids, special tokens left out).
        tokenizer: for ``analyzer=subword``: an HF tokenizer's hub id or local dir (resolved with
            :func:`bertcompress.models.resolver.resolve_model`, offline packages first). It is saved
            with the model, so :meth:`load` needs neither the hub nor the original dir.
        ngram_range: smallest and largest n-gram, e.g. ``(2, 5)``.
        min_df: drop n-grams seen in fewer training texts.
        max_features: keep at most this many n-grams (None: all).
        C: inverse L2 regularisation strength of the logistic regression.
        class_weight: None or ``balanced``.
        max_iter: solver iterations.
        seed: random state of the solver.

    Raises:
        ValueError: an unknown analyzer, a bad ngram_range, or ``analyzer=subword`` without a tokenizer.
    """

    def __init__(
        self,
        analyzer: str = "char_wb",
        ngram_range: Sequence[int] = (2, 5),
        min_df: int = 2,
        max_features: int | None = None,
        C: float = 1.0,
        class_weight: str | None = None,
        max_iter: int = 2000,
        seed: int = 0,
        tokenizer: str | None = None,
    ):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        if analyzer not in ANALYZERS:
            raise ValueError(f"tfidf analyzer={analyzer!r}: expected one of {ANALYZERS}")
        if analyzer == "subword" and not tokenizer:
            raise ValueError(
                "tfidf analyzer='subword' needs a tokenizer: set model.tokenizer to a hub id or a local dir "
                "(e.g. ${teacher.hub_id})"
            )
        lo, hi = (int(n) for n in ngram_range)
        if not 1 <= lo <= hi:
            raise ValueError(f"tfidf ngram_range={list(ngram_range)}: expected 1 <= min <= max")
        self.params = {
            "analyzer": analyzer,
            "ngram_range": [lo, hi],
            "min_df": int(min_df),
            "max_features": max_features,
            "C": float(C),
            "class_weight": class_weight,
            "max_iter": int(max_iter),
            "seed": int(seed),
        }
        if tokenizer:
            self.params["tokenizer"] = str(tokenizer)
        self._tokenizer_source = tokenizer
        self._tokenizer = None  # loaded on first use (analyzer=subword)
        # subword: the texts become space-separated token ids, whose word n-grams the vectorizer counts
        vec_analyzer = "word" if analyzer == "subword" else analyzer
        token_pattern = r"\S+" if analyzer == "subword" else r"(?u)\b\w\w+\b"
        self.pipeline = make_pipeline(
            TfidfVectorizer(
                analyzer=vec_analyzer,
                token_pattern=token_pattern,
                ngram_range=(lo, hi),
                min_df=int(min_df),
                max_features=max_features,
                sublinear_tf=True,
            ),
            LogisticRegression(C=float(C), max_iter=int(max_iter), class_weight=class_weight, random_state=int(seed)),
        )
        self.label_names: list[str] = []

    @property
    def tokenizer(self):
        """The HF tokenizer of ``analyzer=subword`` (None otherwise), loaded once."""
        if self._tokenizer is None and self.params["analyzer"] == "subword":
            from transformers import AutoTokenizer

            from bertcompress.models.resolver import resolve_model

            self._tokenizer = AutoTokenizer.from_pretrained(resolve_model(str(self._tokenizer_source)))
        return self._tokenizer

    def _prepare(self, texts: Sequence[str]) -> list[str]:
        """The vectorizer's input: the texts, or for ``analyzer=subword`` their subword ids joined by spaces."""
        if self.params["analyzer"] != "subword":
            return list(texts)
        # whole texts: the vectorizer has no length limit (verbose=False: no "longer than 512" warning)
        ids = self.tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
        return [" ".join(map(str, row)) for row in ids]

    def fit(self, texts: Sequence[str], labels: Sequence[int], label_names: Sequence[str]) -> TfidfLR:
        """Fit on texts and class ids (0..C-1); every class must occur at least once.

        Raises:
            ValueError: when a class of ``label_names`` has no training text.
        """
        labels = np.asarray(labels)
        missing = sorted(set(range(len(label_names))) - set(labels.tolist()))
        if missing:
            raise ValueError(
                f"tfidf_lr: classes {[label_names[i] for i in missing]} have no training text; "
                "every label needs at least one example"
            )
        self.pipeline.fit(self._prepare(texts), labels)
        self.label_names = list(label_names)
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(N, C) class probabilities, columns in label-id order."""
        if not len(texts):
            return np.zeros((0, len(self.label_names)))
        return self.pipeline.predict_proba(self._prepare(texts))

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """(N, C) log-probabilities, used as a teacher's logits (softmax of them gives back the probabilities)."""
        return np.log(np.clip(self.predict_proba(texts), EPS, 1.0)).astype(np.float32)

    def num_parameters(self) -> dict:
        """Learned numbers: LR coefficients + intercepts, and the idf weights (one per n-gram)."""
        vec, lr = self.pipeline[0], self.pipeline[-1]
        coef = int(lr.coef_.size + lr.intercept_.size)
        idf = int(vec.idf_.size)
        return {
            "total": coef + idf,
            "nonzero": int(np.count_nonzero(lr.coef_)) + idf,
            "embedding": idf,
            "non_embedding": coef,
        }

    def save(self, path: str | Path, extra: dict | None = None) -> Path:
        """Write ``tfidf.npz`` (idf, LR coef and intercept), ``vocabulary.json`` (the n-grams in column
        order) and ``manifest.json`` (and the subword tokenizer, in ``tokenizer/``) into ``path``
        atomically: no pickle, readable by :mod:`bertcompress_runtime` without scikit-learn."""
        path = Path(path)
        vec, lr = self.pipeline[0], self.pipeline[-1]
        terms = [""] * len(vec.vocabulary_)
        for term, col in vec.vocabulary_.items():
            terms[col] = term
        with atomic_dir(path) as tmp:
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(tmp / TOKENIZER_DIR)
            with open(tmp / WEIGHTS, "wb") as f:
                np.savez(f, idf=vec.idf_, coef=lr.coef_, intercept=lr.intercept_, classes=lr.classes_)
            (tmp / VOCABULARY).write_text(json.dumps(terms, ensure_ascii=False), encoding="utf-8")
            atomic_write_json(
                tmp / MANIFEST,
                {
                    "format": "sklearn",
                    "format_version": 2,
                    "weights": WEIGHTS,
                    "vocabulary": VOCABULARY,
                    "label_names": self.label_names,
                    "max_length": None,
                    "text_normalizer": None,
                    "params": self.params,
                    # what the runtime's own vectorizer must reproduce (scikit-learn's defaults here)
                    "vectorizer": {
                        "lowercase": True,
                        "sublinear_tf": True,
                        "norm": "l2",
                        "token_pattern": vec.token_pattern,
                    },
                    "how_to_load": "bertcompress.models.tfidf.TfidfLR.load(dir), or bertcompress_runtime.load(dir)",
                    **(extra or {}),
                },
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> TfidfLR:
        """Load a dir written by :meth:`save`.

        Raises:
            FileNotFoundError: when the dir lacks ``tfidf.npz``, ``vocabulary.json`` or ``manifest.json``.
        """
        path = Path(path)
        for name in (WEIGHTS, VOCABULARY, MANIFEST):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path} is not a tfidf_lr artifact: it has no {name}")
        manifest = json.loads((path / MANIFEST).read_text())
        obj = cls(**manifest["params"])
        if obj.params["analyzer"] == "subword":
            if not (path / TOKENIZER_DIR).is_dir():
                raise FileNotFoundError(f"{path}: a subword tfidf_lr artifact needs its {TOKENIZER_DIR}/ dir")
            obj._tokenizer_source = path / TOKENIZER_DIR  # params keep the tokenizer as configured
        with np.load(path / WEIGHTS, allow_pickle=False) as w:
            idf, coef, intercept, classes = w["idf"], w["coef"], w["intercept"], w["classes"]
        terms = json.loads((path / VOCABULARY).read_text(encoding="utf-8"))
        vec, lr = obj.pipeline[0], obj.pipeline[-1]
        vec.vocabulary_ = {t: i for i, t in enumerate(terms)}
        vec.idf_ = idf
        lr.coef_, lr.intercept_, lr.classes_, lr.n_features_in_ = coef, intercept, classes, coef.shape[1]
        obj.label_names = list(manifest["label_names"])
        return obj
