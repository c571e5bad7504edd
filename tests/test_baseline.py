"""The no-transfer text baseline: TF-IDF terms are capped so that a large many-class task fits in
memory (L-BFGS keeps about twenty copies of classes x terms), while few-shot fits are untouched."""
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from quickadapt.data import load_dataset
from quickadapt.data.sampling import sample_per_class
from quickadapt.evaluate.baseline import fit_baseline, vocabulary_cap


def vectorizers(baseline):
    union = baseline.pipeline.steps[0][1]
    return [vectorizer for _, vectorizer in union.transformer_list]


def test_many_class_text_keeps_the_most_frequent_terms_within_the_cap():
    train = load_dataset("builtin:clinc150-train")
    data = sample_per_class(train, 20, seed=0)  # 3,000 texts: over 11,000 word terms
    cap = vocabulary_cap(150)
    assert cap == 10_000
    baseline = fit_baseline(data, seed=0)
    sizes = [len(v.vocabulary_) for v in vectorizers(baseline)]
    assert max(sizes) == cap and all(size <= cap for size in sizes)
    test = load_dataset("builtin:clinc150-test")
    test = test.subset(np.flatnonzero(test.labels != "oos")[::10])
    predicted, _ = baseline.predict(list(test.inputs))
    assert np.mean(np.asarray(predicted) == test.labels.astype(str)) > 0.6  # chance is 0.7 %


def test_few_shot_fits_keep_every_term():
    few_shot = sample_per_class(load_dataset("builtin:clinc150-train"), 10, seed=0)  # 1,500 texts
    texts = list(few_shot.inputs)
    uncapped = [TfidfVectorizer(ngram_range=(1, 2)).fit(texts), TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4)).fit(texts)]
    capped = vectorizers(fit_baseline(few_shot, seed=0))
    assert [v.vocabulary_ for v in capped] == [v.vocabulary_ for v in uncapped]
    assert vocabulary_cap(2) > 100_000  # a two-class head is small: its terms are not cut
