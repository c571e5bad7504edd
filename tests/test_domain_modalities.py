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
    # meda's ensemble too: nine kernel machines over conv4's learned features or minilm's frozen ones
    model = adapt_domain(source, target.without_labels(), "meda", {"ensemble": True, "steps": 12, "batch_size": 16},
                         seed=0, device="cpu", target_test=target, compare=False, progress=False)
    assert len(model.info["train"]["ensemble"]) == 9 and model.heads["main"].config()["kind"] == "kernel-ensemble"
    again = load_model(save_model(model, tmp_path / "meda-ensemble"))
    assert again.predict(target.inputs)[0] == model.predict(target.inputs)[0]


def test_the_few_classes_warning_gives_advice_that_fits_the_inputs(texts, monkeypatch):
    """A text user whose kept model answered the target with few classes was told to try a source
    of "the same colours, contrast, scale"."""
    import quickadapt.domain.adapt as adapt_module

    monkeypatch.setattr(adapt_module, "FEW_CLASSES_FRACTION", 2.0)  # fires whatever the answers
    source, target = texts
    model = adapt_domain(source, target.without_labels(), "source-only", {"steps": 12}, seed=0, device="cpu",
                         progress=False)
    few = [w for w in model.info["warnings"] if "answers most target inputs with few classes" in w]
    assert len(few) == 1 and "(the same language, wording, spelling, length)" in few[0] and "colours" not in few[0]
    assert "(the same colours, contrast, scale)" in adapt_module.few_classes_warning("mcc", 0.0, 10, 300, "image")


def test_features_are_standardised_by_source_and_target_together():
    """Digits as feature vectors, the target scaled by 1.5 and moved by 3. Standardised by the
    source alone, the border pixels that barely vary there blew the shift up 5 to 25 times
    (source-only at 19 %); read raw, a column of large values drowns the rest."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    y = y.astype(str).astype(object)
    order = np.random.default_rng(0).permutation(len(x))
    s, t = order[:600], order[600:1000]
    source, target = Dataset("features", x[s], y[s]), Dataset("features", x[t] * 1.5 + 3, y[t])
    model = adapt_domain(source, target.without_labels(), "source-only", {"steps": 150}, target_test=target,
                         seed=0, progress=False)
    assert model.info["target_test_accuracy"] >= 0.8
    both = np.concatenate([x[s], x[t] * 1.5 + 3])
    assert np.allclose(model.encoder.input_shift.numpy(), both.mean(0))


def test_conv4_reads_colour_when_the_domains_are_in_colour(tmp_path):
    """Red and green discs of one grey level: conv4's grey default (for Omniglot) put the
    source-only fit at chance on both domains."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(1)

    def discs(root, background):
        for name, rgb in {"red": (255, 0, 0), "green": (0, 130, 0)}.items():  # both about 76 in grey
            (root / name).mkdir(parents=True)
            for j in range(30):
                im = Image.new("RGB", (28, 28), background)
                x0, y0 = rng.integers(2, 16, 2)
                size = int(rng.integers(6, 11))
                ImageDraw.Draw(im).ellipse([int(x0), int(y0), int(x0) + size, int(y0) + size], fill=rgb)
                im.save(root / name / f"{j}.png")
        return str(root)

    source, target = discs(tmp_path / "s", (0, 0, 0)), discs(tmp_path / "t", (40, 40, 40))
    model = adapt_domain(source, target, "source-only", {"steps": 150}, target_test=target, seed=0, progress=False)
    assert model.encoder.settings["grey"] is False and model.info["inputs_grey"] is False
    assert model.info["target_test_accuracy"] >= 0.9
