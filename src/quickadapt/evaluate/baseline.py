"""Models that transfer nothing, to tell whether transfer helped: TF-IDF + logistic regression
for text, a linear model on the raw values for feature vectors, conv4 from random init for images
(grey when every training image is grey, else colour)."""
from __future__ import annotations

import warnings

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
# their fits are unchanged, and tasks with few classes can afford more terms.
COEFFICIENT_BUDGET = 1_500_000
MIN_VOCABULARY = 10_000


def vocabulary_cap(n_classes: int) -> int:
    """Most frequent terms each TF-IDF vectorizer keeps, so that classes x terms stays in budget."""
    return max(MIN_VOCABULARY, COEFFICIENT_BUDGET // max(n_classes, 1))


def fit_baseline(data: Dataset, *, seed: int, device="cpu"):
    """Fit the no-transfer model for `data`'s modality. Classes are weighed alike, as the probe
    weighs them (the same fit where every class has as many examples)."""
    if data.modality == "text":
        cap = vocabulary_cap(len(np.unique(data.labels.astype(str))))
        words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, max_features=cap)
        chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, max_features=cap)
        return SklearnBaseline(make_pipeline(make_union(words, chars), LogisticRegression(C=10, max_iter=2000, class_weight="balanced"))).fit(data)
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
