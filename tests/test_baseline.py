"""The no-transfer text baseline: TF-IDF terms are capped so that a large many-class task fits in
memory (L-BFGS keeps about twenty copies of classes x terms) at any number of classes, while few-shot
fits are untouched."""
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from quickadapt.data import Dataset, load_dataset
from quickadapt.data.sampling import sample_per_class
from quickadapt.evaluate.baseline import COEFFICIENT_BUDGET, fit_baseline, vocabulary_cap


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


def test_a_catalogue_of_many_classes_stays_within_the_budget():
    """A floor of 10,000 terms a vectorizer, above the budget past 150 classes, took 1,000 classes
    x 5 CLINC texts to 5.8 GB: 500 classes keep 3,000 terms each, as 150 keep 10,000."""
    texts = sample_per_class(load_dataset("builtin:clinc150-train"), 7, seed=0)  # 1,050 texts
    catalogue = Dataset(modality="text", inputs=texts.inputs, labels=np.array([f"c{i % 500}" for i in range(len(texts))]))
    sizes = [len(v.vocabulary_) for v in vectorizers(fit_baseline(catalogue, seed=0))]
    assert sizes == [vocabulary_cap(500)] * 2 == [COEFFICIENT_BUDGET // 500] * 2


def test_few_shot_fits_keep_every_term():
    few_shot = sample_per_class(load_dataset("builtin:clinc150-train"), 10, seed=0)  # 1,500 texts
    texts = list(few_shot.inputs)
    uncapped = [TfidfVectorizer(ngram_range=(1, 2)).fit(texts), TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4)).fit(texts)]
    capped = vectorizers(fit_baseline(few_shot, seed=0))
    assert [v.vocabulary_ for v in capped] == [v.vocabulary_ for v in uncapped]
    assert vocabulary_cap(2) > 100_000  # a two-class head is small: its terms are not cut


def word_terms(baseline, texts):
    return vectorizers(baseline)[0].transform(texts)


def text_data(rows):
    from quickadapt.data.dataset import Dataset
    return Dataset("text", [text for text, _ in rows], np.asarray([label for _, label in rows], dtype=object))


def test_chinese_and_japanese_words_are_characters_and_indic_words_keep_their_vowel_signs():
    from quickadapt.evaluate.baseline import words
    assert words("我的银行卡丢了") == ["我", "的", "银", "行", "卡", "丢", "了"]
    assert words("カードをなくしました") == list("カードをなくしました")
    # Python's \w leaves out Devanagari's vowel signs: the default pattern kept only अपन of these
    assert words("मुझे अपने खाते की शेष राशि") == ["मुझे", "अपने", "खाते", "की", "शेष", "राशि"]
    assert words("บัตรของฉันหาย") == ["บั", "ต", "ร", "ข", "อ", "ง", "ฉั", "น", "ห", "า", "ย"]  # Thai: letter and marks
    assert words("don't a 3rd über") == ["don", "3rd", "über"]  # as scikit-learn's default reads Latin text


def test_a_new_chinese_sentence_shares_word_terms_with_the_examples():
    rows = [("我想查一下银行卡余额", "balance"), ("帮我看看账户余额", "balance"), ("我的银行卡丢了", "lost"),
            ("卡不见了请帮我挂失", "lost")]
    baseline = fit_baseline(text_data(rows), seed=0)
    # scikit-learn's pattern read each sentence as one term, found in no other sentence
    assert word_terms(baseline, ["我的账户余额是多少"]).nnz > 0
    labels, _ = baseline.predict(["我的账户余额是多少", "银行卡挂失"])
    assert labels == ["balance", "lost"]


def test_text_in_another_unicode_form_scores_the_same():
    import unicodedata
    rows = [("Überweisung an meine Mutter", "transfer"), ("Geld überweisen", "transfer"),
            ("Ich möchte meinen Kontostand prüfen", "balance"), ("Wie hoch ist mein Guthaben", "balance")]
    baseline = fit_baseline(text_data(rows), seed=0)
    composed = ["Überweisung prüfen", "ＡＴＭ Guthaben"]  # full-width, as a Japanese keyboard types it
    other = [unicodedata.normalize("NFD", composed[0]), "ATM Guthaben"]
    np.testing.assert_allclose(baseline.pipeline.predict_proba(other), baseline.pipeline.predict_proba(composed),
                               rtol=1e-6)


def test_texts_without_a_word_are_read_by_their_characters():
    """Emoji reactions, single-digit ratings, punctuation: no word in any of them, and scikit-learn
    refused the empty vocabulary with a ValueError traceback."""
    baseline = fit_baseline(text_data([("👍", "up"), ("👍👍", "up"), ("👎", "down"), ("👎 😡", "down")]), seed=0)
    assert baseline.predict(["👍 👍", "😡"])[0] == ["up", "down"]
    baseline = fit_baseline(text_data([("1", "bad"), ("2", "bad"), ("5", "good"), ("4", "good"), ("?", "bad")]), seed=0)
    assert baseline.predict(["5", "1"])[0] == ["good", "bad"]
