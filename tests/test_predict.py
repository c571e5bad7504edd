"""Prediction over many inputs: embedded and scored a chunk at a time under one progress bar,
with the same answers as all at once; abstaining compares the score as it is written."""
import numpy as np
import pytest
from sklearn.datasets import load_digits

import quickadapt.model as model_module
from quickadapt.adapt import adapt
from quickadapt.data import Dataset
from quickadapt.errors import BadInput
from quickadapt.model import BlendedModel, shown_score
from quickadapt.progress import progress_bar


@pytest.fixture(scope="module")
def digits_model():
    x, y = load_digits(return_X_y=True)
    data = Dataset("features", x[:300].astype(np.float32), y[:300].astype(str).astype(object))
    return adapt(data, encoder="mlp", strategy="probe", cv=0, progress=False), x[300:].astype(np.float32)


def test_chunked_answers_equal_one_pass(digits_model, monkeypatch):
    model, test = digits_model
    whole = model.predict_proba(test)
    labels, scores = model.predict(test)
    monkeypatch.setattr(model_module, "PREDICT_CHUNK", 7)  # 1,497 rows in 214 chunks, the last of six
    assert np.allclose(model.predict_proba(test), whole, atol=1e-6)
    chunked_labels, chunked_scores = model.predict(test)
    assert chunked_labels == labels and np.allclose(chunked_scores, scores, atol=1e-6)
    blend = BlendedModel([model, model], [0.5, 0.5], strategy="blend")  # a geometric mean of a model with itself
    assert np.allclose(blend.predict_proba(test), whole, atol=1e-5)
    assert len(model.predict(test[:0])[0]) == 0 and model.predict_proba(test[:0]).shape == (0, 10)


def test_a_non_finite_score_names_its_row_across_chunks(digits_model, monkeypatch):
    model, test = digits_model
    monkeypatch.setattr(model_module, "PREDICT_CHUNK", 4)
    rows = test[:10].copy()
    rows[9, 0] = np.nan  # in the third chunk
    with pytest.raises(BadInput, match="input 10 are not finite"):
        model.predict(rows)


def test_one_bar_counts_every_row_once_cached_or_repeated(monkeypatch, tmp_path):
    """minilm's features come from the cache the second time: the bar still reaches the total."""
    monkeypatch.setenv("QUICKADAPT_CACHE", str(tmp_path))
    texts = ["check my balance", "book a flight", "what time is it", "play some jazz"] * 3
    data = Dataset("text", texts[:4], np.array(["bank", "travel", "time", "music"], dtype=object))
    model = adapt(data, encoder="minilm", strategy="prototypes", cv=0, progress=False)
    monkeypatch.setattr(model_module, "PREDICT_CHUNK", 5)
    seen = []

    def recording_bar(description, total):
        if callable(description):  # the outer bar's advance, passed on as progress_bar passes it
            yield description
            return
        seen.append(total)
        with progress_bar(None, total) as advance:  # silent, but counted
            def counting(n=1, description=None):
                seen.append(n)
                advance(n)
            yield counting

    import contextlib
    import shutil

    monkeypatch.setattr("quickadapt.progress.progress_bar", contextlib.contextmanager(recording_bar))
    shutil.rmtree(tmp_path / "embeddings")  # the fit cached the four texts: predict must embed them itself
    computed = []
    for _ in range(2):  # embedded (each text once), then served by the cache
        seen.clear()
        labels, _ = model.predict(texts, progress="predicting")
        computed.append(len(list((tmp_path / "embeddings").rglob("*.safetensors"))))
        assert labels == ["bank", "travel", "time", "music"] * 3
        assert seen[0] == len(texts) and sum(seen[1:]) == len(texts)
    assert computed == [1, 1]  # the first pass embedded and stored the four texts, the second only read them


def test_a_score_written_as_the_threshold_is_answered(digits_model):
    model, test = digits_model
    labels, scores = model.predict(test[:50])
    i = int(np.argsort(scores)[25])
    t = shown_score(scores[i])
    answered, _ = model.predict(test[:50], abstain=True, threshold=t)
    assert answered[i] == labels[i]
    kept = [lab != "__none__" for lab in answered]
    assert kept == [shown_score(s) >= t for s in scores]  # what a filter of the written file keeps
