"""`blend`: a transferred model mixed with a from-scratch conv4, on scikit-learn's digits as
images (8x8, unlike anything ImageNet shows, where the scratch model has most to add)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from quickadapt.artifact import load_model, save_model
from quickadapt.data import Dataset, load_dataset
from quickadapt.encoders import create_encoder
from quickadapt.errors import BadInput
from quickadapt.model import BlendedModel
from quickadapt.transfer import FitContext, create_strategy
from quickadapt.transfer.blend import DEFAULT_WEIGHT
from tests.cli_helpers import assert_bad_input, assert_top_ranks_the_model_s_probabilities, run

SIZE = 96  # efficientnet-lite0 input side: small keeps the suite fast; the mix does not depend on it


@pytest.fixture(scope="module")
def digits():
    """(train: 8 per class, test: 40 per class), drawn once."""
    d = load_dataset("builtin:digits")
    rng = np.random.default_rng(0)
    tr, te = [], []
    for c in d.classes:
        idx = rng.permutation(np.flatnonzero(d.labels == c))
        tr += list(idx[:8])
        te += list(idx[8:48])
    return d.subset(tr), d.subset(te)


def fit(train, **params):
    encoder = create_encoder("efficientnet-lite0", size=SIZE)
    return create_strategy("blend", **params).fit(encoder, train, FitContext(seed=0, progress=False))


def accuracy(model, data):
    pred, _ = model.predict(data.inputs)
    return float(np.mean(np.asarray(pred) == data.labels))


def test_blend_mixes_its_parts_and_round_trips(digits, tmp_path):
    train, test = digits
    model = fit(train, weight=0.3)
    assert isinstance(model, BlendedModel) and model.weights == [0.7, 0.3]
    transferred, scratch = model.parts
    assert scratch.encoder.name == "conv4" and not scratch.encoder.is_pretrained
    assert scratch.encoder.settings["grey"] is True  # grey digits: read grey, as always
    # the weighted geometric mean of the parts' probabilities, renormalised
    p0, p1 = transferred.predict_proba(test.inputs), scratch.predict_proba(test.inputs)
    expected = p0 ** 0.7 * p1 ** 0.3
    np.testing.assert_allclose(model.predict_proba(test.inputs), expected / expected.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)
    acc = accuracy(model, test)
    assert acc > 0.6, acc  # chance is 0.1
    save_model(model, tmp_path / "m")
    # rank cannot score a blend (no one feature space or head): refused, not read as its first part
    from quickadapt.select import rank
    with pytest.raises(BadInput, match="blend of several models"):
        rank(test, [str(tmp_path / "m")])
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["manifest.json", "model.safetensors", "part-0", "part-1"]
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["blend"]["weights"] == [0.7, 0.3] and manifest["strategy"]["name"] == "blend"
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, BlendedModel)
    np.testing.assert_allclose(loaded.predict_proba(test.inputs), model.predict_proba(test.inputs), atol=1e-5)
    for weights in ([1.5, -0.5], [0, 0]):  # edited by hand: a negative share inverts a part's answer
        (tmp_path / "m" / "manifest.json").write_text(json.dumps({**manifest, "blend": {**manifest["blend"], "weights": weights}}))
        with pytest.raises(BadInput, match="blend weights must be numbers >= 0"):
            load_model(tmp_path / "m")
    # a part folder that went missing is named, not a traceback
    shutil.rmtree(tmp_path / "m" / "part-1")
    with pytest.raises(BadInput, match="part-1"):
        load_model(tmp_path / "m")


def test_the_scratch_model_reads_colour_when_the_images_have_it():
    from tests.test_image_encoders import colour_task

    train, test = colour_task(24, seed=0), colour_task(40, seed=1)  # the ink's colour is the label
    model = fit(train, weight=1.0)  # the scratch model alone answers
    assert model.parts[1].encoder.settings["grey"] is False
    assert accuracy(model, test) >= 0.9  # read grey, red and green ink look alike: chance is 0.5


def test_weight_zero_is_the_base_model(digits):
    train, test = digits
    model = fit(train, weight=0.0)
    np.testing.assert_allclose(model.predict_proba(test.inputs), model.parts[0].predict_proba(test.inputs), atol=1e-6)


def test_auto_blends_when_cross_validation_says_it_helps(digits):
    train, test = digits
    model = fit(train)
    chosen = model.info["blend"]
    assert chosen["by"] == "3-fold cross-validation"
    assert {"cv_accuracy_blend", "cv_accuracy_transferred", "cv_accuracy_scratch", "p_transferred_better"} <= set(chosen)
    # on 8x8 digits the scratch model carries what ImageNet features miss: the mix is chosen and
    # beats its base on held-out digits too
    assert chosen["cv_accuracy_blend"] >= chosen["cv_accuracy_transferred"] and chosen["weight"] == DEFAULT_WEIGHT
    assert accuracy(model, test) > accuracy(model.parts[0], test)
    # one example per class leaves nothing to cross-validate: the default weight
    one = train.subset([int(np.flatnonzero(train.labels == c)[0]) for c in train.classes])
    assert fit(one).info["blend"] == {"weight": DEFAULT_WEIGHT, "by": "default (too few examples to cross-validate)"}


def test_auto_drops_a_scratch_model_that_makes_things_worse(digits, monkeypatch):
    """A scratch part that answers at random out of fold: the mix loses, so the weight is 0."""
    import quickadapt.evaluate.baseline as baseline

    train, _ = digits
    real = baseline.fit_baseline

    def noisy(data, **kw):
        model = real(data, **kw)
        rng = np.random.default_rng(0)
        model.predict_proba = lambda inputs, **_: rng.dirichlet(np.full(len(model.classes["main"]), 0.05), len(inputs))
        return model

    monkeypatch.setattr(baseline, "fit_baseline", noisy)
    chosen = fit(train).info["blend"]
    assert chosen["cv_accuracy_blend"] < chosen["cv_accuracy_transferred"] and chosen["p_transferred_better"] < 0.05
    assert chosen["weight"] == 0.0


def test_bad_settings_and_data():
    with pytest.raises(BadInput, match="weight"):
        create_strategy("blend", weight=1.5)
    with pytest.raises(BadInput, match="weight"):
        create_strategy("blend", weight="lots")
    with pytest.raises(BadInput, match="another strategy"):
        create_strategy("blend", base="blend")
    with pytest.raises(BadInput, match="needs source; blend takes one dataset"):
        create_strategy("blend", base="joint")
    with pytest.raises(BadInput, match="unknown strategy"):
        create_strategy("blend", base="nope")
    text = Dataset("text", ["hello there", "good bye", "hi", "bye now"], np.array(["a", "b", "a", "b"]))
    with pytest.raises(BadInput, match="the data is text"):
        create_strategy("blend").fit(create_encoder("mlp", in_dim=4), text, FitContext(progress=False))


def test_cli_fit_predict_blend(digits, tmp_path):
    train, test = digits
    root = tmp_path / "imgs"
    for i, (arr, label) in enumerate(zip(train.inputs[:40], train.labels[:40])):
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(root / label / f"{i}.png")
    out = tmp_path / "model"
    r = run("fit", "--data", root, "--encoder", "efficientnet-lite0", "--set", f"encoder.size={SIZE}",
            "--strategy", "blend", "--set", "weight=0.2", "--out", out, "--quiet", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["strategy"] == "blend" and json.loads(r.stdout)["blend"] == {"weight": 0.2, "by": "setting"}
    r = run("predict", out, "--data", root, "--json", "--quiet")
    assert r.exit_code == 0, r.stderr
    preds = json.loads(r.stdout)["predictions"]
    assert len(preds) == len(list(root.rglob("*.png"))) and all(0 < p["score"] <= 1 for p in preds)
    assert_top_ranks_the_model_s_probabilities(out, root, 3)  # the mixed probabilities, ranked
    r = run("fit", "--data", root, "--encoder", "efficientnet-lite0", "--set", f"encoder.size={SIZE}", "--strategy", "blend",
            "--out", tmp_path / "auto", "--cv", "0")
    assert r.exit_code == 0, r.stderr
    assert "blend: the from-scratch model's share is " in r.stdout and "3-fold cross-validation: blend" in r.stdout
    r = run("fit", "--data", root, "--encoder", "efficientnet-lite0", "--strategy", "blend", "--set", "weight=2",
            "--out", tmp_path / "never", "--quiet")
    assert_bad_input(r, "weight")
    assert not (tmp_path / "never").exists()


def test_base_settings_reach_the_base_strategy(digits):
    """`base.KEY=value` sets the base strategy's own settings, checked by its names and ranges."""
    train, _ = digits
    few = train.subset(np.flatnonzero(np.isin(train.labels, ["0", "1"]))[:8])
    blend = create_strategy("blend", base="prototypes", weight=0.2, **{"base.scale": 3.0})
    assert blend.params()["base.scale"] == 3.0
    model = blend.fit(create_encoder("efficientnet-lite0", size=SIZE), few, FitContext(seed=0, progress=False))
    assert model.parts[0].strategy_params["scale"] == 3.0
    with pytest.raises(BadInput, match="unknown setting 'epochs' for strategy 'prototypes'"):
        create_strategy("blend", base="prototypes", **{"base.epochs": 1})
    with pytest.raises(BadInput, match="setting 'epochs' for strategy 'finetune' must be at least 1"):
        create_strategy("blend", base="finetune", **{"base.epochs": 0})


def test_copies_count_once_when_blend_chooses_its_weight(monkeypatch):
    """Held out together and answered alike, copies carry no new evidence: 4 examples where the
    mix is wrong and the transferred model alone right is not significant (p = 0.06); written
    three times each they were 12 (p = 0.0002), and the scratch model was dropped."""
    from quickadapt.data import Dataset
    from quickadapt.transfer import FitContext, create_strategy

    n_classes, per_class, wrong = 3, 10, {0, 11, 22, 5}  # ids where the scratch model is sure and wrong
    ids = np.arange(n_classes * per_class)
    truth = ids // per_class

    class Fixed:
        """A part whose answer for an example is set by its id (feature 0)."""

        def __init__(self, scratch):
            self.scratch = scratch
            self.classes = {"main": [str(c) for c in range(n_classes)]}

        def predict_proba(self, inputs):
            out = []
            for i in np.asarray(inputs)[:, 0].astype(int):
                p = np.full(n_classes, 0.3)
                if not self.scratch:
                    p[truth[i]] = 0.4  # right, unsure: the mix follows a sure scratch model
                else:
                    p[:] = 0.005
                    p[(truth[i] + (i in wrong)) % n_classes] = 0.99
                out.append(p / p.sum())
            return np.array(out)

    def figures(copies):
        rows = np.repeat(ids, copies)
        data = Dataset("features", np.stack([rows, np.zeros(len(rows))], 1).astype(float),
                       truth[rows].astype(str).astype(object))
        blend = create_strategy("blend")
        monkeypatch.setattr(blend, "fit_parts", lambda enc, train, ctx: (Fixed(False), Fixed(True)))
        return blend.choose_weight(None, data, FitContext(seed=0, progress=False))

    once, thrice = figures(1), figures(3)
    assert once[0] == thrice[0] == DEFAULT_WEIGHT  # kept: 4 distinct examples are within the noise
    assert once[1] == thrice[1] and once[1]["p_transferred_better"] == 0.0625


def test_blend_is_listed_and_refused_as_image_only_before_any_encoder_loads(monkeypatch):
    """Listed beside the others, blend was refused on text and features only inside its fit,
    after the encoder had loaded (7 s for minilm)."""
    import quickadapt.adapt as adapt_module
    from cli_helpers import run
    from quickadapt.adapt import adapt

    monkeypatch.setattr(adapt_module, "resolve_encoder", lambda *a, **k: pytest.fail("the encoder was loaded"))
    text = Dataset("text", ["hello there", "good bye", "hi", "bye now"], np.array(["a", "b", "a", "b"], dtype=object))
    with pytest.raises(BadInput, match=r"strategy 'blend' adapts only image data; the data is text \(use 'probe' alone\)"):
        adapt(text, strategy="blend", cv=0, progress=False)
    listing = run("strategies").stdout
    names = [line for line in listing.splitlines() if not line.startswith(" ")]
    assert "blend (image only)" in names and "probe" in names
    lr = next(line for line in listing.split("\nlora\n")[1].splitlines() if line.strip().startswith("lr ="))
    assert "0 = the encoder's own rate" in lr  # lora's lr = 0 trains the adapters at the encoder's own rate
