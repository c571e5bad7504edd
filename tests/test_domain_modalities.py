"""One interface for every encoder kind: each method adapts conv4 on images (real digits ->
the same digits rotated) and a frozen minilm on text (CLINC150 training utterances -> noisy
test-split utterances), and the result saves and loads as an ordinary artifact. Short runs: these
check the plumbing per modality; accuracy is tested on features in test_domain_methods.py."""
import numpy as np
import pytest
from scipy.ndimage import rotate

from quickadapt.artifact import load_model, save_model
from quickadapt.data import Dataset, load_dataset
from quickadapt.data.shifts import noisy_text
from quickadapt.domain import adapt_domain, list_methods


@pytest.fixture(scope="module")
def images():
    d = load_dataset("builtin:digits")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(d))
    s, t = order[:200], order[200:320]
    target = [rotate(d.inputs[i], 35, reshape=False, order=1) for i in t]
    return d.subset(s), Dataset("image", target, d.labels[t], name="digits-rot35")


@pytest.fixture(scope="module")
def texts():
    train, test = load_dataset("builtin:clinc150-train"), load_dataset("builtin:clinc150-test")
    intents = ["balance", "book_flight", "weather", "alarm", "translate", "pin_change"]
    src = train.subset([i for c in intents for i in np.flatnonzero(train.labels == c)[:20]])
    tgt = test.subset([i for c in intents for i in np.flatnonzero(test.labels == c)[:15]])
    rng = np.random.default_rng(0)
    return src, Dataset("text", [noisy_text(x, rng) for x in tgt.inputs], tgt.labels, name="clinc-noisy")


@pytest.mark.parametrize("modality", ["image", "text"])
def test_every_method_runs_on_every_encoder_kind(modality, images, texts, tmp_path):
    source, target = images if modality == "image" else texts
    for method in list_methods():
        model = adapt_domain(
            source, target.without_labels(), method, {"steps": 12, "batch_size": 16}, seed=0, device="cpu",
            target_test=target, compare=False, progress=False,
        )
        entry = model.info["methods"][method]
        assert 0.0 <= entry["target_test_accuracy"] <= 1.0 and np.isfinite(entry["dev_risk"])
        if method in ("cdan-e", "reweight", "centroids", "meda"):  # artifacts per modality: save, load, same predictions
            out = save_model(model, tmp_path / method)
            again = load_model(out)
            assert again.predict(target.inputs)[0] == model.predict(target.inputs)[0]
    expected = {"image": "conv4", "text": "minilm"}[modality]
    assert model.encoder.name == expected and model.encoder_tuned == (modality == "image")
