"""Models that transfer nothing, to tell whether transfer helped: TF-IDF + logistic regression
for text, a linear model on the raw values for feature vectors, conv4 from random init for images
(grey when every training image is grey, else colour)."""
from __future__ import annotations

import re
import sys
import unicodedata
import warnings
from functools import lru_cache

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline, make_union
from sklearn.preprocessing import StandardScaler

from quickadapt.data.dataset import Dataset


class SklearnBaseline:
    """An sklearn pipeline behind the `predict(inputs) -> (labels, scores)` contract."""

    def __init__(self, pipeline):
        self.pipeline = pipeline

    def fit(self, data: Dataset) -> "SklearnBaseline":
        inputs = list(data.inputs) if data.modality == "text" else np.asarray(data.inputs)
        with warnings.catch_warnings():
            # one example per class makes sklearn suspect a regression target: few-shot is the point here
            warnings.filterwarnings("ignore", message="The number of unique classes is greater than 50%")
            self.pipeline.fit(inputs, data.labels.astype(str))
        return self

    def predict(self, inputs):
        inputs = list(inputs) if isinstance(inputs, list) else np.asarray(inputs)
        proba = self.pipeline.predict_proba(inputs)
        classes = self.pipeline.classes_
        return classes[proba.argmax(1)].tolist(), proba.max(1)


# L-BFGS keeps about twenty copies of the coefficients (classes x terms): on CLINC150's 15,000
# training texts (49,045 terms, 150 classes) uncapped it peaked at 2,267 MB; the 10,000 most
# frequent terms per vectorizer peaked at 1,116 MB and scored 92.9 % against 92.6 %. Few-shot
# vocabularies stay under the cap (CLINC150 at K = 10: 6,949 word and 8,436 character terms), so
# their fits are unchanged, and tasks with few classes can afford more terms. The budget holds at
# any number of classes: a floor of 10,000 terms, which only binds above 150 classes, took a
# catalogue of 1,000 classes x 5 CLINC texts (20,000 terms) to 5.8 GB and 176 s, and one of 3,000
# past the memory of most machines. Fewer terms cost the baseline some accuracy (CLINC150 at K = 5,
# 150 classes: 73.9 % at 10,000 terms, 69.5 % at 1,500), which docs/fit.md says.
COEFFICIENT_BUDGET = 1_500_000
FEWEST_TERMS = 100


def vocabulary_cap(n_classes: int) -> int:
    """Most frequent terms each TF-IDF vectorizer keeps, so that classes x terms stays in budget."""
    return max(FEWEST_TERMS, COEFFICIENT_BUDGET // max(n_classes, 1))


# Chinese, Japanese and Thai (and Lao, Khmer, Burmese) write no spaces between words:
# scikit-learn's word pattern read a whole Chinese sentence as one term (seen in no other text),
# so the word half of the baseline was blind there. Each character (with its marks) is a term of
# its own instead, and their pairs are the word bigrams, as Chinese search indexes them: on 6
# intents in each language (10-14 texts a class, 10 draws) the baseline rose from 68.3 to
# 80.6 % (Chinese), 73.9 to 78.5 % (Japanese) and 84.3 to 91.3 % (Thai) at K=5.
UNSPACED = ("\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff"  # Thai, Lao, Myanmar, Khmer
            "\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0002fa1f")


@lru_cache(maxsize=None)
def word_pattern() -> re.Pattern:
    """Terms as scikit-learn's default reads them (runs of two or more word characters) where a
    word's combining marks belong to it: Python's \\w leaves out the vowel signs of Devanagari and
    other Indic scripts, which cut मुझे अपने खाते की into अपन alone (and Thai into fragments);
    in a script written without spaces, one character and its marks is a term."""
    marks = "".join(re.escape(chr(c)) for c in range(sys.maxunicode + 1)
                    if unicodedata.category(chr(c)) in ("Mn", "Mc", "Me"))
    return re.compile(rf"[{UNSPACED}][{marks}]*|(?:(?![{UNSPACED}])[\w{marks}]){{2,}}")


def words(text: str) -> list[str]:
    return word_pattern().findall(text)


def normalized(text: str) -> str:
    """Lower case, and one encoding for each character (NFKC): é typed as one character or as e
    and an accent (as macOS writes it) is one term, as MiniLM's tokenizer reads it; so are a
    full-width Ａ or １ (typed with a Chinese or Japanese keyboard) and A or 1."""
    return unicodedata.normalize("NFKC", text).lower()


def fit_baseline(data: Dataset, *, seed: int, device="cpu"):
    """Fit the no-transfer model for `data`'s modality. Classes are weighed alike, as the probe
    weighs them (the same fit where every class has as many examples)."""
    if data.modality == "text":
        cap = vocabulary_cap(len(np.unique(data.labels.astype(str))))
        terms = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, max_features=cap, preprocessor=normalized,
                                tokenizer=words, token_pattern=None)
        chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, max_features=cap,
                                preprocessor=normalized)
        # texts of emoji, single digits (ratings) or punctuation have no word at all, and an empty
        # vocabulary is an error in scikit-learn: their characters are read, as every text's are
        has_words = any(words(normalized(text)) for text in data.inputs)
        return SklearnBaseline(make_pipeline(make_union(terms, chars) if has_words else chars,
                                             LogisticRegression(C=10, max_iter=2000, class_weight="balanced"))).fit(data)
    if data.modality == "features":
        return SklearnBaseline(make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced"))).fit(data)
    from quickadapt.data.images import all_grey
    from quickadapt.encoders import create_encoder
    from quickadapt.train import seed_everything
    from quickadapt.transfer import FitContext, create_strategy

    seed_everything(seed)
    # grey only when every training image is (as fit's own conv4 decides, adapt.py): the
    # colour of the user's images may be what tells the classes apart
    encoder = create_encoder("conv4", pretrained=False, grey=all_grey(data.inputs))
    ctx = FitContext(device=device, seed=seed, progress=False)
    return create_strategy("finetune", probe_init=False, epochs=30).fit(encoder, data, ctx)


BASELINE_NAMES = {"text": "tfidf+logistic", "features": "standardized+logistic", "image": "conv4 from scratch"}
