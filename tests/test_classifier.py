"""FewShotClassifier honours scikit-learn's estimator contract and round-trips through save/load."""
import json

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from quickadapt.classifier import FewShotClassifier
from quickadapt.data import load_dataset
from quickadapt.errors import BadInput


@parametrize_with_checks([FewShotClassifier(encoder="mlp")])
def test_sklearn_contract(estimator, check):
    check(estimator)


def test_frozen_classifiers_share_the_pretrained_weights_and_tuning_ones_do_not():
    """Every FewShotClassifier fitted with a frozen encoder held a whole copy of MiniLM (93 MB of
    RSS each, measured over 6 fits): frozen ones now read one set of weight tensors, while a
    fine-tuning fit still trains a copy of its own, which leaves the shared weights as they were."""
    import torch

    train = load_dataset("builtin:clinc150-train")
    intents = ["balance", "weather", "alarm"]
    rows = np.concatenate([np.flatnonzero(train.labels == i)[:4] for i in intents])
    X, y = [train.inputs[i] for i in rows], train.labels[rows]
    Xt = [train.inputs[i] for i in np.concatenate([np.flatnonzero(train.labels == i)[4:10] for i in intents])]

    def weights(clf):
        return dict(clf.model_.encoder.named_parameters())

    a = FewShotClassifier(encoder="minilm", strategy="probe").fit(X, y)
    b = FewShotClassifier(encoder="minilm", strategy="prototypes").fit(X, y)
    name, w = next(iter(weights(a).items()))
    assert weights(b)[name].data_ptr() == w.data_ptr()  # one tensor, not two copies
    assert a.model_.encoder is not b.model_.encoder and weights(b)[name] is not w  # modules and Parameters their own
    before = w.detach().clone()
    proba = a.predict_proba(Xt)
    tuned = FewShotClassifier(encoder="minilm", strategy="finetune", strategy_params={"epochs": 1}).fit(X, y)
    assert weights(tuned)[name].data_ptr() != w.data_ptr()
    assert not torch.equal(weights(tuned)[name], before)  # it trained its own copy ...
    assert torch.equal(w, before)  # ... not the shared weights
    c = FewShotClassifier(encoder="minilm", strategy="probe").fit(X, y)
    np.testing.assert_allclose(c.predict_proba(Xt), proba, atol=1e-6)


def test_get_params_and_clone():
    clf = FewShotClassifier(encoder="mlp", strategy="prototypes", strategy_params={"scale": 5.0}, seed=3)
    assert clf.get_params()["strategy_params"] == {"scale": 5.0}
    assert clone(clf).get_params() == clf.get_params()


def test_a_grid_over_one_strategy_setting_uses_scikit_learn_s_nested_names():
    """GridSearchCV(clf, {"strategy_params__C": [...]}), scikit-learn's way to name a setting
    inside a parameter, failed with "AttributeError: 'NoneType' object has no attribute
    'set_params'" (BaseEstimator asks the dict for its own set_params), in a Pipeline too."""
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = _blobs()
    given = {"class_weight": "none"}
    clf = FewShotClassifier(encoder="mlp", strategy_params=given).set_params(strategy_params__C=0.5,
                                                                              encoder_params__hidden=8)
    assert clf.get_params()["strategy_params"] == {"class_weight": "none", "C": 0.5}
    assert clf.get_params()["encoder_params"] == {"hidden": 8} and given == {"class_weight": "none"}
    search = GridSearchCV(FewShotClassifier(encoder="mlp"), {"strategy_params__C": [0.01, 3.0]}, cv=2).fit(X, y)
    assert [p["strategy_params__C"] for p in search.cv_results_["params"]] == [0.01, 3.0]
    assert search.best_estimator_.model_.strategy_params["C"] == search.best_params_["strategy_params__C"]
    pipe = make_pipeline(StandardScaler(), FewShotClassifier(encoder="mlp", strategy="prototypes"))
    pipe.set_params(fewshotclassifier__strategy_params__scale=4.0, fewshotclassifier__encoder_params__hidden=8)
    pipe.fit(X, y)
    assert pipe[-1].model_.strategy_params["scale"] == 4.0 and pipe[-1].model_.encoder.settings["hidden"] == 8
    with pytest.raises(ValueError, match="^unknown setting 'C' for strategy 'prototypes'"):  # checked at fit
        pipe.set_params(fewshotclassifier__strategy_params__C=1.0).fit(X, y)


def test_text_fit_predict_save_load(tmp_path):
    train = load_dataset("builtin:clinc150-train")
    test = load_dataset("builtin:clinc150-test")
    intents = ["balance", "weather", "alarm", "translate"]
    tr = np.concatenate([np.flatnonzero(train.labels == i)[:5] for i in intents])
    te = np.concatenate([np.flatnonzero(test.labels == i)[:20] for i in intents])
    X, y = [train.inputs[i] for i in tr], train.labels[tr]
    Xt, yt = [test.inputs[i] for i in te], test.labels[te]
    clf = FewShotClassifier(encoder="minilm", strategy="probe", cv=3).fit(X, y)
    assert clf.score(Xt, yt) > 0.8
    assert clf.predict_proba(Xt).shape == (len(Xt), 4)
    clf.save(tmp_path / "m")
    again = FewShotClassifier.load(tmp_path / "m")
    assert np.array_equal(again.predict(Xt), clf.predict(Xt))
    np.testing.assert_allclose(again.predict_proba(Xt), clf.predict_proba(Xt), atol=1e-6)
    refused = FewShotClassifier(encoder="minilm", cv=3, abstain=True, threshold=1.0).fit(X, y).predict(Xt)
    assert set(refused) == {"__none__"}


def test_abstain_needs_a_threshold_and_a_free_none_label():
    from quickadapt.errors import BadInput

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3)).astype(np.float32)
    y = np.arange(20) % 2
    X[:, 0] += 3 * y
    with pytest.raises(ValueError, match="needs a confidence threshold"):
        FewShotClassifier(encoder="mlp", abstain=True).fit(X, y)  # cv=0: nothing to calibrate one with
    with pytest.raises(BadInput, match="^threshold is a probability: between 0 and 1"):  # not --threshold
        FewShotClassifier(encoder="mlp", abstain=True, threshold=1.5).fit(X, y)  # refused at fit, not later
    clf = FewShotClassifier(encoder="mlp").fit(X, y).set_params(abstain=True)  # turned on after the fit
    with pytest.raises(BadInput, match="no calibrated abstain threshold.*pass threshold$"):
        clf.predict(X)
    clf.set_params(threshold=1.5)
    with pytest.raises(BadInput, match="between 0 and 1"):
        clf.predict(X)
    clf.set_params(threshold=0.5, none_label="1")
    with pytest.raises(BadInput, match="^none_label '1' is one of the model's classes"):
        clf.predict(X)
    clf.set_params(none_label="__none__")  # text among numbers: score() and GridSearchCV could not compare them
    with pytest.raises(ValueError, match="^none_label '__none__' is text but the labels are numbers"):
        clf.predict(X)
    with pytest.raises(ValueError, match="e.g. none_label=-1"):
        FewShotClassifier(encoder="mlp", abstain=True, cv=2).fit(X, y)
    clf.set_params(none_label=-1)
    assert set(clf.predict(X)) <= {0, 1, -1} and 0 <= clf.score(X, y) <= 1


def test_save_load_keeps_label_values_and_settings(tmp_path):
    import quickadapt

    rng = np.random.default_rng(1)
    X = rng.normal(size=(24, 3)).astype(np.float32)
    y = np.arange(24) % 3 + 5  # integer labels
    X[:, 0] += 2 * (y - 5)
    assert "FewShotClassifier" in dir(quickadapt)  # imported lazily, listed all the same
    clf = quickadapt.FewShotClassifier(encoder="mlp", cv=2, none_label="nah", seed=4).fit(X, y)
    clf.save(tmp_path / "m")
    again = quickadapt.FewShotClassifier.load(tmp_path / "m")
    assert again.classes_.tolist() == [5, 6, 7] and again.classes_.dtype.kind == "i"
    assert np.array_equal(again.predict(X), clf.predict(X)) and again.score(X, y) == clf.score(X, y)
    assert again.get_params()["none_label"] == "nah" and again.get_params()["seed"] == 4
    assert again.get_params() == clf.get_params()  # strategy_params stays None, as given



@pytest.mark.parametrize("estimator", [5, {"params": ["seed"]}])
def test_an_edited_estimator_entry_is_refused_in_one_line_naming_the_folder(tmp_path, estimator):
    """`load` read the manifest's `estimator` as it came: a number there was an AttributeError."""
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(24, 3)).astype(np.float32), np.arange(24) % 3
    FewShotClassifier(encoder="mlp", cv=0).fit(X, y).save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    manifest["estimator"] = estimator
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BadInput, match=f"{tmp_path / 'm'}: manifest.json holds a value of the wrong kind"):
        FewShotClassifier.load(tmp_path / "m")

def test_text_encoder_on_numbers_says_which_encoder_reads_them():
    X = np.zeros((6, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"reads text, so X must be strings, got ndarray at X\[0\]; .*encoder='mlp'"):
        FewShotClassifier().fit(X, [0, 1] * 3)


def test_empty_text_is_refused_as_the_cli_refuses_it():
    with pytest.raises(ValueError, match=r"X\[1\] is empty text"):
        FewShotClassifier(cv=0).fit(["hi there", " ", "bye now", "see you"], [0, 0, 1, 1])
    clf = FewShotClassifier(cv=0).fit(["hi there", "hello", "bye now", "see you"], [0, 0, 1, 1])
    with pytest.raises(ValueError, match=r"X\[0\] is empty text"):
        clf.predict([""])
    # only invisible characters (zero-width spaces, a BOM, controls): MiniLM reads [CLS] [SEP], as
    # for "", and answered a class as if it said something
    for nothing in ("\u200b\u200b", "\ufeff \u200d", "\x00\x07"):
        with pytest.raises(ValueError, match=r"X\[1\] is empty text"):
            clf.predict(["hi", nothing])
    assert len(clf.predict(["?!", "\u200bhi"])) == 2  # punctuation, or a word beside them, is read


def test_half_a_character_is_refused_as_the_cli_refuses_it():
    """A text cut inside an emoji at a UTF-16 length keeps a lone surrogate ("\\ud83d" in JSON):
    the tokenizer failed on it with a TypeError from deep in transformers."""
    import json

    cut = json.loads('"my card is lost \\ud83d"')
    with pytest.raises(ValueError, match=r"X\[1\] holds half a character \('\\ud83d', a lone UTF-16 surrogate"):
        FewShotClassifier(cv=0).fit(["hi there", cut, "bye now", "see you"], [0, 0, 1, 1])
    clf = FewShotClassifier(cv=0).fit(["hi there", "hello \U0001F600", "bye now", "see you"], [0, 0, 1, 1])
    with pytest.raises(ValueError, match=r"X\[0\] holds half a character"):
        clf.predict([cut])
    with pytest.raises(ValueError, match=r"y\[2\] holds half a character"):
        FewShotClassifier(cv=0).fit(["hi there", "hello", "bye now", "see you"], ["a", "a", cut, cut])


def test_python_errors_name_keyword_arguments_not_flags():
    from quickadapt.errors import BadInput
    from quickadapt.meta.run import run_episodes

    X = np.random.default_rng(0).normal(size=(8, 2)).astype(np.float32)
    for clf, message in ((FewShotClassifier(encoder="mlp", cv=1), "cv is a number of folds"),
                         (FewShotClassifier(encoder="mlp", device="gpu"), "device must be auto, cpu or cuda")):
        with pytest.raises(BadInput, match=f"^{message}") as caught:
            clf.fit(X, [0, 1] * 4)
        assert "--" not in str(caught.value)
    with pytest.raises(BadInput, match="^adapt must be one of method, prototypes, finetune, got 'tune'$"):
        run_episodes("conv4", "builtin:omniglot", n_way=5, k_shot=1, adapt="tune")


def test_none_labels_inputs_and_wrongly_typed_settings_are_named():
    from quickadapt.errors import BadInput

    texts, labels = ["play jazz", "rain today", "play rock", "snow soon"], ["m", "w", "m", "w"]
    with pytest.raises(ValueError, match=r"^y\[2\] is None; every example needs a label"):
        FewShotClassifier().fit(texts, ["m", "w", None, "w"])
    with pytest.raises(ValueError, match=r"got NoneType at X\[1\]"):
        FewShotClassifier().fit([texts[0], None, *texts[2:]], labels)
    clf = FewShotClassifier().fit(texts, labels)
    with pytest.raises(ValueError, match=r"got NoneType at X\[1\]"):
        clf.predict(["play", None])
    with pytest.raises(BadInput, match="^threshold is a probability: between 0 and 1, got '0.5'"):
        FewShotClassifier(threshold="0.5").fit(texts, labels)
    with pytest.raises(BadInput, match="^cv is a number of folds: 0 \\(no estimate\\) or at least 2, got 2.5"):
        FewShotClassifier(cv=2.5).fit(texts, labels)
    for strategy in ("joint", "multitask"):
        with pytest.raises(ValueError, match=f"strategy '{strategy}' also trains on a second labelled dataset, which "
                                             "FewShotClassifier cannot take"):
            FewShotClassifier(strategy=strategy).fit(texts, labels)


def test_a_table_s_empty_cells_are_named_as_missing_values():
    """pandas reads an empty text cell as NaN, and a nullable column ("string", "Int64") holds NA:
    a NaN text was met with 'for numeric feature vectors use encoder='mlp'', and an NA label with
    'y mixes labels of the types NAType, str ... e.g. [str(v) for v in y]', which made a class
    '<NA>' (with feature vectors, a TypeError from scikit-learn)."""
    from pandas_na import NA

    texts, labels = ["play jazz", "rain today", "play rock", "snow soon"], ["m", "w", "m", "w"]
    for gap in (float("nan"), NA):
        with pytest.raises(ValueError, match=r"X must be strings, got \w+ at X\[2\]; a missing value: every input "
                                             r"needs some text$"):
            FewShotClassifier().fit([*texts[:2], gap, texts[3]], labels)
        column = np.array([*labels[:3], gap], dtype=object)
        with pytest.raises(ValueError, match=r"^y\[3\] is (nan|<NA>); every example needs a label$"):
            FewShotClassifier().fit(texts, column)
        with pytest.raises(ValueError, match=r"^y\[3\] is (nan|<NA>); every example needs a label$"):
            FewShotClassifier(encoder="mlp").fit(np.eye(4), column)
    with pytest.raises(ValueError, match=r"got int at X\[1\]; for numeric feature vectors use encoder='mlp'$"):
        FewShotClassifier().fit(["play jazz", 3, "play rock", "snow soon"], labels)
    # bytes (h5py's strings, numpy's "S" arrays) are text not yet decoded, not numbers either
    with pytest.raises(ValueError, match=r"got bytes_? at X\[0\]; decode them, e.g. \[x.decode\('utf-8'\) "
                                         r"for x in X]$"):
        FewShotClassifier().fit(np.array(texts, dtype="S"), labels)


def test_seed_must_be_a_whole_number_like_the_cli_s():
    X = np.random.default_rng(0).normal(size=(8, 2)).astype(np.float32)
    for seed in (-1, 1.5):
        with pytest.raises(ValueError, match="seed must be a whole number >= 0"):
            FewShotClassifier(encoder="mlp", seed=seed).fit(X, [0, 1] * 4)


# a model fit on a csv keeps its columns' names, and scikit-learn warns, as for any estimator so fit,
# when a plain array reaches it: expected here, where the arrays hold those columns in their order
CSV_COLUMNS_WARNING = pytest.mark.filterwarnings("ignore:X does not have valid feature names:UserWarning")


@CSV_COLUMNS_WARNING
def test_a_cli_model_loads_with_the_fit_s_seed_and_folds(tmp_path):
    from cli_helpers import run

    rng = np.random.default_rng(2)
    y = np.arange(30) % 3
    X = (rng.normal(size=(30, 2)) + 3 * y[:, None]).astype(np.float32)
    rows = ["a,b,label", *(f"{a},{b},{c}" for (a, b), c in zip(X, y))]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    r = run("fit", "--data", tmp_path / "train.csv", "--encoder", "mlp", "--out", tmp_path / "m", "--cv", 4,
            "--seed", 7, "--quiet")
    assert r.exit_code == 0, r.stderr
    clf = FewShotClassifier.load(tmp_path / "m")
    assert clf.get_params()["cv"] == 4 and clf.get_params()["seed"] == 7 and clf.strategy == "probe"
    assert clf.score(X, y.astype(str)) > 0.9


def test_float_labels_are_the_classes_the_command_line_reads(tmp_path):
    """y = 1.0, 2.0 is saved as classes "1" and "2", as a csv's 1 or 1.0 is read, so evaluate on a
    file with those labels works; labels that are one class as text are refused."""
    from cli_helpers import run

    rng = np.random.default_rng(0)
    y = np.arange(30) % 2 + 1.0
    X = rng.normal(size=(30, 2)).astype(np.float32) + 3 * y[:, None]
    clf = FewShotClassifier(encoder="mlp", cv=0).fit(X, y)
    assert clf.classes_.tolist() == [1.0, 2.0] and set(clf.predict(X)) <= {1.0, 2.0}
    clf.save(tmp_path / "m")
    assert FewShotClassifier.load(tmp_path / "m").classes_.tolist() == [1.0, 2.0]
    (tmp_path / "t.csv").write_text("f0,f1,label\n" + "".join(f"{a},{b},{lab:.1f}\n" for (a, b), lab in zip(X, y)))
    r = run("evaluate", tmp_path / "m", "--data", tmp_path / "t.csv", "--json")
    assert r.exit_code == 0, r.stderr
    assert set(json.loads(r.stdout)["per_class"]) == {"1", "2"}
    with pytest.raises(ValueError, match=r"labels '1' and '1.0', which are one class as text \('1'\)"):
        FewShotClassifier(encoder="mlp", cv=0).fit(X, np.where(y == 1, "1", "1.0"))


def test_a_label_column_of_numbers_held_as_objects_is_refused_naming_the_conversion():
    """A table's label column that held a gap or a word keeps dtype object once those rows are
    dropped: fit refused it with scikit-learn's 'Unknown label type: unknown. Maybe you are trying
    to fit a classifier, which expects discrete classes on a regression target', which names no
    fix; scikit-learn's metrics refuse such a y too, so it is not taken in silently either."""
    from sklearn.metrics import accuracy_score

    texts = ["play jazz", "rain today", "play rock", "snow soon", "play pop", "sunny all day"]
    for values, kind in (([10, 2, 10, 2, 10, 2], "int"), ([np.int64(10), 2, 10, 2, 10, 2], "int"),
                         ([1.0, 2.0, 1.0, 2.0, 1, 2], "float"), ([True, False] * 3, "bool")):
        y = np.array(values, dtype=object)
        for clf, X in ((FewShotClassifier(), texts), (FewShotClassifier(encoder="mlp"), np.eye(6))):
            with pytest.raises(ValueError, match=rf"^Unknown label type: y holds {kind} labels in an array of "
                                                 rf"dtype object, .*: pass them as numbers, e.g. "
                                                 rf"np.asarray\(y, dtype={kind}\)"):
                clf.fit(X, y)
            converted = np.asarray(y, dtype=kind)
            assert clf.fit(X, converted).predict(X).dtype == converted.dtype  # as the message says, it then works
            with pytest.raises(ValueError):  # why it is not converted here: the caller's y meets metrics too
                accuracy_score(y, clf.predict(X))
    texts_too = np.array(["m", 1, "m", 1, "m", 1], dtype=object)
    with pytest.raises(ValueError, match="^y mixes labels of the types int, str"):
        FewShotClassifier().fit(texts, texts_too)


def test_pickle_round_trip_with_the_pretrained_text_encoder(monkeypatch):
    """joblib/pickle, as scikit-learn users store estimators: transformers' models do not pickle
    once they have run (local hook functions), so the fitted model travels as a model folder."""
    import pickle

    monkeypatch.setenv("QUICKADAPT_NO_CACHE", "1")  # the encoder must really run before the dump
    X = ["what is my balance", "how much money do I have", "show my account balance",
         "transfer 50 to mom", "send money to john", "move funds to savings"]
    clf = FewShotClassifier().fit(X, ["balance"] * 3 + ["transfer"] * 3)
    again = pickle.loads(pickle.dumps(clf))
    assert again.get_params() == clf.get_params() and again.classes_.tolist() == ["balance", "transfer"]
    new = ["please send 20 dollars to my sister", "what's left in my account"]
    assert np.array_equal(again.predict_proba(new), clf.predict_proba(new))
    assert again.predict(new).tolist() == ["transfer", "balance"]


def test_a_pickle_of_an_older_version_that_stored_the_model_object_is_refused_clearly():
    """Versions before the model folder format pickled the model object itself: its encoder, an
    object of an older class, unpickled without error and failed at predict (AttributeError:
    'MLPEncoder' object has no attribute 'inputs_standardised')."""
    X, y = _blobs()
    clf = FewShotClassifier(encoder="mlp", cv=0).fit(X, y)
    old_state = dict(vars(clf))  # what pickle stored then: the estimator's __dict__, model_ included
    with pytest.raises(ValueError, match=r"pickled by an older quickadapt.*clf.save\(FOLDER\)"):
        FewShotClassifier.__new__(FewShotClassifier).__setstate__(old_state)


def _blobs(seed=2, n=30, classes=3):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    return (rng.normal(size=(n, 2)) + 3 * y[:, None]).astype(np.float32), y


def test_a_refit_that_fails_leaves_no_fitted_model_behind():
    """The old model answering with the new fit's labels would be silently wrong."""
    from sklearn.exceptions import NotFittedError

    X, y = _blobs()
    clf = FewShotClassifier(encoder="mlp").fit(X, y)
    clf.set_params(strategy_params={"C": 0})
    with pytest.raises(ValueError, match="C"):
        clf.fit(X, 2 - y)
    with pytest.raises(NotFittedError):
        clf.predict(X)
    with pytest.raises(ValueError, match="one label per input"):  # refused before any text is embedded
        FewShotClassifier().fit(["hello", "goodbye"], [("a", 1), ("b", 1)])


def test_the_estimator_keeps_float64_features_as_the_command_line_does():
    """A timestamp near 1.7e9 whose last digits tell the classes apart: float32 merged them all."""
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    X = np.c_[1.7e9 + np.where(y == 0, rng.integers(1, 25, 40), rng.integers(35, 60, 40)), rng.normal(size=40)]
    clf = FewShotClassifier(encoder="mlp", cv=3).fit(X, y)
    assert clf.model_.info["cv_accuracy"] >= 0.95 and (clf.predict(X) == y).mean() >= 0.95


def test_saved_models_record_the_data_and_what_the_fit_measured(tmp_path):
    from quickadapt.data.dataset import Dataset

    X, y = _blobs()
    FewShotClassifier(encoder="mlp", cv=3).fit(X, y).save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["data_fingerprint"] == Dataset("features", X, y.astype(str)).fingerprint()
    assert manifest["metrics"]["cv_accuracy"] > 0.8 and manifest["metrics"]["cv_folds"] == 3  # chance: 1/3


def test_a_model_folder_encoder_is_kept_through_save_load_and_refit(tmp_path):
    """Its manifest names the architecture (mlp) alone: a refit from that would start at random."""
    from cli_helpers import run

    X, y = _blobs()
    base = tmp_path / "base"
    FewShotClassifier(encoder="mlp", strategy="finetune", strategy_params={"epochs": 1}).fit(X, y).save(base)
    clf = FewShotClassifier(encoder=str(base), strategy="prototypes").fit(X, y)
    clf.save(tmp_path / "m")
    again = FewShotClassifier.load(tmp_path / "m")
    assert again.get_params() == clf.get_params()
    assert clone(again).fit(X, y).model_.info["encoder_pretrained"]
    (tmp_path / "t.csv").write_text("a,b,label\n" + "".join(f"{a},{b},{c}\n" for (a, b), c in zip(X, y)))
    r = run("fit", "--data", tmp_path / "t.csv", "--encoder", base, "--out", tmp_path / "cli", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert FewShotClassifier.load(tmp_path / "cli").get_params()["encoder"] == str(base.resolve())


@CSV_COLUMNS_WARNING
def test_a_model_moved_away_from_its_encoder_folder_still_loads_and_predicts(tmp_path, monkeypatch):
    """load worked out the inputs' kind from the folder the encoder came from (a CLI fit's
    info.encoder_folder, an estimator's encoder as given, ./base relative to where it was fit):
    once that folder had moved, or the model was loaded from another working directory, load
    raised 'not a Hugging Face model folder' though the model holds its encoder's weights. The
    loaded model's own encoder says it now; refitting still names the folder it needs."""
    from cli_helpers import run

    X, y = _blobs()
    (tmp_path / "laptop").mkdir()
    monkeypatch.chdir(tmp_path / "laptop")
    FewShotClassifier(encoder="mlp", strategy="finetune", strategy_params={"epochs": 1}).fit(X, y).save("base")
    FewShotClassifier(encoder="./base", strategy="prototypes").fit(X, y).save("api")
    (tmp_path / "t.csv").write_text("a,b,label\n" + "".join(f"{a},{b},{c}\n" for (a, b), c in zip(X, y)))
    assert run("fit", "--data", tmp_path / "t.csv", "--encoder", "base", "--out", "cli", "--quiet").exit_code == 0
    before = {m: FewShotClassifier.load(m).predict_proba(X) for m in ("api", "cli")}
    (tmp_path / "laptop").rename(tmp_path / "server")
    monkeypatch.chdir(tmp_path)
    for m in ("api", "cli"):
        again = FewShotClassifier.load(tmp_path / "server" / m)
        assert np.array_equal(again.predict_proba(X), before[m])
        # the folder to refit from is gone: said so, not refit at random nor called a Hugging Face folder
        with pytest.raises(BadInput, match="'.*base' is neither an encoder name .* nor an existing folder"):
            clone(again).fit(X, y)


class _Series:
    """What a pandas Series does that matters here: `s[i]` reads by index label, not position (a
    shuffled train/test split keeps its rows' labels as index), a slice by position, and iteration
    gives the values in order."""

    def __init__(self, values, index):
        self.values, self.index = list(values), list(index)

    def __len__(self):
        return len(self.values)

    def __iter__(self):
        return iter(self.values)

    def __getitem__(self, key):
        if isinstance(key, slice):  # a Series of those rows, keeping their index
            return _Series(self.values[key], self.index[key])
        return self.values[self.index.index(key)]


class _DataFrame:
    """What a pandas DataFrame does that matters here: iteration gives its column names,
    `iloc[:, j]` column j, and np.asarray its rows."""

    def __init__(self, columns: dict):
        self.columns, self._data = list(columns), columns

    def __len__(self):
        return len(self._data[self.columns[0]])

    @property
    def shape(self):
        return len(self), len(self.columns)

    def __iter__(self):
        return iter(self.columns)

    def __array__(self, dtype=None, copy=None):
        return np.array([self._data[c] for c in self.columns], dtype=dtype).T

    @property
    def iloc(self):
        frame = self

        class _ILoc:
            def __getitem__(self, key):
                return _Series(frame._data[frame.columns[key[1]]], range(len(frame)))

        return _ILoc()


def test_a_table_or_a_dict_as_x_is_read_by_its_rows_not_its_column_names():
    """predict(df[["text"]]) answered one row, for the word "text"; a dict answered for its keys."""
    texts, labels = ["play jazz", "rain today", "play rock", "snow soon"], ["m", "w", "m", "w"]
    clf = FewShotClassifier().fit(_DataFrame({"text": texts}), labels)
    assert clf.predict(_DataFrame({"text": texts[::-1]})).tolist() == clf.predict(texts[::-1]).tolist()
    with pytest.raises(ValueError, match=r"^X is a table with columns text, id; pass the column that holds the "
                                         r"inputs, e.g. X\['text'\]"):
        clf.predict(_DataFrame({"text": texts, "id": ["a", "b", "c", "d"]}))
    with pytest.raises(ValueError, match="^X is a dict; pass a list of inputs"):
        clf.predict({"play jazz": "m"})
    for y in (None, {"m": 1}):  # len() of them failed with a TypeError
        with pytest.raises(ValueError, match=f"^y must hold one label per input .*, got {type(y).__name__}$"):
            FewShotClassifier().fit(texts, y)
    mixed = np.array(["m", "m", 1, 1], dtype=object)  # a spreadsheet column: numpy cannot sort it
    with pytest.raises(ValueError, match="^y mixes labels of the types int, str, which cannot be sorted"):
        FewShotClassifier().fit(texts, mixed)


def test_a_column_of_text_as_scikit_learn_passes_it_on_is_read_as_its_texts():
    """A ColumnTransformer picking the text column (its output is always 2-D), or a table's
    values (df[["text"]].to_numpy()), gives a (n, 1) array: fit refused it ("X must be strings,
    got ndarray at X[0]"), while the one-column DataFrame it came from was read."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline

    texts, labels = ["play jazz", "rain today", "play rock", "snow soon"], ["m", "w", "m", "w"]
    table = np.array([[t, f"id{i}"] for i, t in enumerate(texts)], dtype=object)
    pipe = make_pipeline(ColumnTransformer([("text", "passthrough", [0])]), FewShotClassifier()).fit(table, labels)
    new = ["play some pop", "hail coming soon"]
    expected = FewShotClassifier().fit(texts, labels).predict_proba(new)
    np.testing.assert_allclose(pipe.predict_proba(np.array([[t, "x"] for t in new], dtype=object)), expected)
    np.testing.assert_allclose(pipe[-1].predict_proba(np.array(new)[:, None]), expected)  # a str array too
    with pytest.raises(ValueError, match=r"^X is a 2-D array of 2 columns; pass the column that holds the "
                                         r"inputs, e.g. X\[:, 0\]$"):
        pipe[-1].predict(table)


def test_inputs_indexed_by_label_are_read_by_position():
    """A pandas Series from a shuffled split: Dataset.subset (every domain-adaptation and
    cross-validation split) paired a row's text with another row's label, and a model's
    predict answered each input with another's answer; a DataFrame of features was read as
    its column names."""
    from quickadapt.data.dataset import Dataset

    texts, labels = ["play jazz", "rain today", "play rock", "snow soon"], ["m", "w", "m", "w"]
    shuffled = _Series(texts, index=[3, 2, 1, 0])
    part = Dataset("text", shuffled, labels).subset([0, 1])
    assert list(part.inputs) == texts[:2] and part.labels.tolist() == labels[:2]
    model = FewShotClassifier().fit(texts, labels).model_
    new = ["play some pop", "play the blues", "sunny all of today", "hail coming soon"]  # not in the cache yet
    assert model.predict(_Series(new, index=[3, 2, 1, 0]))[0] == model.predict(new)[0] == ["m", "m", "w", "w"]

    X, y = _blobs()
    model = FewShotClassifier(encoder="mlp").fit(X, y).model_
    frame = _DataFrame({f"f{j}": X[:, j] for j in range(X.shape[1])})
    assert model.predict(frame)[0] == model.predict(X)[0]
    with pytest.raises(ValueError, match=r"feature vectors must be a 2-D array, one row per example; got shape \(2,\)"):
        model.predict(X[0])


def test_a_table_s_column_names_outlive_save_and_load(tmp_path, monkeypatch):
    """Loaded, a model fit on a DataFrame had no feature_names_in_: the table with its columns
    in another order was read in the wrong order (answers changed, with only sklearn's generic
    warning), where the fitted estimator refused it."""
    import sklearn.utils.validation

    # scikit-learn reads the column names of real DataFrames only (pandas, polars: not installed here)
    read = sklearn.utils.validation._get_feature_names
    monkeypatch.setattr(sklearn.utils.validation, "_get_feature_names",
                        lambda X: np.asarray(X.columns, dtype=object) if isinstance(X, _DataFrame) else read(X))
    X, y = _blobs(n=30)
    X = np.c_[X, np.zeros(len(X))]
    names = ["height", "width", "depth"]
    table = _DataFrame({n: X[:, j] for j, n in enumerate(names)})
    clf = FewShotClassifier(encoder="mlp").fit(table, y)
    clf.save(tmp_path / "m")
    # refit on text: the table's names and width are not the text model's
    clf.set_params(encoder="minilm").fit(["play jazz", "rain today", "play rock", "snow soon"], [0, 1, 0, 1])
    assert not hasattr(clf, "feature_names_in_") and not hasattr(clf, "n_features_in_")
    assert "feature_columns" not in clf.model_.info
    loaded = FewShotClassifier.load(tmp_path / "m")
    assert loaded.feature_names_in_.tolist() == names
    assert (loaded.predict(table) == y).mean() > 0.9
    with pytest.raises(ValueError, match="Feature names must be in the same order as they were in fit"):
        loaded.predict(_DataFrame({n: X[:, names.index(n)] for n in names[::-1]}))


def test_numpy_numbers_as_settings_work_as_python_ones(tmp_path):
    """A grid over np.arange gives np.int64: seed=np.int64(3) failed in random.seed ("The only
    supported seed types are..."), and it or cv=np.int64(2) made save record the labels as null,
    so load gave integer labels back as strings."""
    X, y = _blobs()
    FewShotClassifier(encoder="mlp", seed=np.int64(3), cv=np.int64(2)).fit(X, y).save(tmp_path / "m")
    loaded = FewShotClassifier.load(tmp_path / "m")
    assert loaded.classes_.tolist() == [0, 1, 2] and loaded.get_params()["seed"] == 3


def test_a_threshold_alone_abstains_as_on_the_command_line():
    """FewShotClassifier(threshold=0.9) answered every input (only abstain=True used it), while
    `predict --threshold 0.9` alone abstains."""
    X, y = _blobs()
    clf = FewShotClassifier(encoder="mlp", threshold=0.999, none_label=-1).fit(X, y)
    proba = clf.predict_proba(X)
    unsure = proba.max(1) < 0.999
    assert unsure.any() and not unsure.all()
    pred = clf.predict(X)
    assert (pred[unsure] == -1).all() and np.array_equal(pred[~unsure], clf.classes_[proba[~unsure].argmax(1)])
    assert np.array_equal(pred, clf.set_params(abstain=True).predict(X))  # the same as saying abstain=True
    assert -1 not in clf.set_params(abstain=False, threshold=None).predict(X)
    with pytest.raises(ValueError, match="e.g. none_label=-1"):  # numbers need a numeric none_label, as with abstain
        FewShotClassifier(encoder="mlp", threshold=0.5).fit(X, y)


def test_score_warns_of_labels_the_model_never_learnt():
    """clf.score on CLINC150 test rows with their out-of-scope ones labelled "oos" gave 0.66 for a
    model scoring 0.88 on the in-scope rows, without a word: a label it never learnt counts wrong."""
    import warnings

    X, y = _blobs()
    clf = FewShotClassifier(encoder="mlp", threshold=0.999, none_label=-1).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # labels it knows, and its none_label while abstaining: no warning
        plain = clf.score(X, y)
        assert clf.score(X[:3], [-1, -1, -1]) == np.mean(clf.predict(X[:3]) == -1)
    y_new = np.where(np.arange(len(y)) < 4, 7, y)
    with pytest.warns(UserWarning, match=r"y holds labels the model never learnt \(7\): their 4 of \d+ rows count wrong"):
        assert clf.score(X, y_new) == np.mean(clf.predict(X) == y_new) < plain + 1e-12
    with pytest.warns(UserWarning, match=r"never learnt \(-1\)"):  # not abstaining, -1 is no answer of it
        clf.set_params(threshold=None).score(X[:3], [-1, -1, -1])


def test_save_names_its_argument_path_in_its_messages(tmp_path, monkeypatch):
    """clf.save(path) said "choose another out" and "out . is the current folder": no argument of its."""
    from quickadapt.errors import BadInput

    X, y = _blobs()
    clf = FewShotClassifier(encoder="mlp").fit(X, y)
    clf.save(tmp_path / "m")
    with pytest.raises(BadInput, match="already exists; choose another path or pass force=True"):
        clf.save(tmp_path / "m")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(BadInput, match="^path .*f.txt exists and is not a folder"):
        clf.save(tmp_path / "f.txt")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BadInput, match="^path . is the current folder"):
        clf.save(".")


def test_the_examples_cross_validation_put_in_another_class_are_named_by_position():
    # a caller fixing labels needs the rows of X to look at, as fit --json names them
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (12, 4)), rng.normal(8, 1, (12, 4))])
    y = np.array([0] * 12 + [1] * 12)
    y[5] = 1  # a point of the first cluster labelled as the second
    clf = FewShotClassifier(encoder="mlp", cv=3).fit(X, y)
    found = clf.model_.info["cv_disagreements"]
    assert found[0]["row"] == 6 and (found[0]["label"], found[0]["predicted"]) == ("1", "0")


def test_threads_predicting_at_once_never_run_the_encoder_in_training_mode(monkeypatch):
    """A service's threads share one fitted model: one thread's predict must not switch the
    encoder (back) to training mode, with dropout, under another's forward. The steps are forced
    in the order that raced: B's forward runs after A's predict has returned."""
    import threading

    monkeypatch.setenv("QUICKADAPT_NO_CACHE", "1")  # every predict runs the encoder
    X, y = _blobs()
    clf = FewShotClassifier(encoder="mlp").fit(X, y)
    encoder = clf.model_.encoder
    a_inside, b_inside, a_done = threading.Event(), threading.Event(), threading.Event()
    modes = {}
    forward = encoder.forward

    def ordered_forward(batch):
        if threading.current_thread().name == "A":
            a_inside.set()
            b_inside.wait(10)
        else:
            b_inside.set()
            a_done.wait(10)
        modes[threading.current_thread().name] = [m.training for m in encoder.modules()]
        return forward(batch)

    monkeypatch.setattr(encoder, "forward", ordered_forward)

    def a():
        clf.predict_proba(X[:1])
        a_done.set()

    first = threading.Thread(target=a, name="A")
    second = threading.Thread(target=lambda: clf.predict_proba(X[1:2]), name="B")
    first.start()
    assert a_inside.wait(10)
    second.start()
    first.join(20), second.join(20)
    assert set(modes) == {"A", "B"} and not any(modes["A"] + modes["B"])
    assert not any(m.training for m in clf.model_.modules())  # left as a loaded model is


def test_a_loaded_model_predicts_after_the_folder_it_was_fit_on_is_gone(tmp_path):
    """A service loads a model once; the encoder folder it was fit from (a meta-trained model, a
    Hugging Face folder) may since have been moved, replaced or never copied to the server: the
    loaded model holds all it needs, and predict read that folder at every call."""
    import shutil

    X, y = _blobs()
    base = tmp_path / "base"
    FewShotClassifier(encoder="mlp", strategy="finetune", strategy_params={"epochs": 1}).fit(X, y).save(base)
    FewShotClassifier(encoder=str(base)).fit(X, y).save(tmp_path / "m")
    clf = FewShotClassifier.load(tmp_path / "m")
    expected = clf.predict_proba(X)
    shutil.rmtree(base)
    np.testing.assert_array_equal(clf.predict_proba(X), expected)
    np.testing.assert_array_equal(FewShotClassifier.load(tmp_path / "m").predict(X), clf.predict(X))


def _global_random_numbers():
    import random

    import torch

    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_fit_and_load_leave_the_caller_s_random_numbers_as_they_were(tmp_path):
    """quickadapt inside someone else's program: a fit seeds the global generators for its own
    numbers, a load builds layers with random weights first; neither may reset or move the
    caller's. They did: after every fit random.random(), np.random.rand() and torch.rand() gave
    the numbers of seed 0 again."""
    import random

    import torch

    from quickadapt.data import Dataset
    from quickadapt.domain import adapt_domain

    X, y = _blobs()
    source, target = Dataset("features", X, y.astype(str)), Dataset("features", X + 1, None)
    clf = FewShotClassifier(encoder="mlp", strategy="finetune", strategy_params={"epochs": 1}, seed=0)
    for i, call in enumerate((lambda: clf.fit(X, y), lambda: clf.save(tmp_path / "m"),
                              lambda: FewShotClassifier.load(tmp_path / "m").predict(X),
                              lambda: adapt_domain(source, target, method="coral", params={"mode": "closed"}, device="cpu",
                                                   progress=False))):
        random.seed(100 + i), np.random.seed(100 + i), torch.manual_seed(100 + i)
        expected = _global_random_numbers()
        random.seed(100 + i), np.random.seed(100 + i), torch.manual_seed(100 + i)
        call()
        assert _global_random_numbers() == expected, i
    again = FewShotClassifier(encoder="mlp", strategy="finetune", strategy_params={"epochs": 1}, seed=0).fit(X, y)
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))  # still the seed's numbers


HOST_PROGRAM = """
import os, socket
attempts = []
def refuse(*args, **kwargs):
    attempts.append(args[:1])
    raise OSError("no network here")
socket.socket.connect = lambda self, *args: refuse(*args)
socket.getaddrinfo = refuse
from quickadapt import FewShotClassifier
clf = FewShotClassifier().fit(["what is my balance", "send money to mom", "my balance please", "transfer cash"], list("btbt"))
assert list(clf.predict(["how much do i have"])) == ["b"]
import huggingface_hub.constants
print(sorted(k for k in os.environ if k.endswith("_OFFLINE")), huggingface_hub.constants.HF_HUB_OFFLINE, attempts)
import quickadapt.cli
print(sorted(k for k in os.environ if k.endswith("_OFFLINE")))
"""


def test_a_host_program_s_hugging_face_downloads_stay_online():
    """Importing quickadapt set HF_HUB_OFFLINE=1 and TRANSFORMERS_OFFLINE=1 in the calling
    program's environment: its own downloads from the Hugging Face Hub (a pipeline, a
    sentence-transformers model), and its subprocesses', failed as offline. The library needs
    neither (every load passes local_files_only=True): a minilm fit and predict try no
    connection without them. The command line, a process of its own, still sets them."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    run = subprocess.run([sys.executable, "-c", HOST_PROGRAM], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    library, cli = run.stdout.splitlines()[-2:]
    assert library == "[] False []"
    assert cli == "['HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE']"


def test_a_service_that_switched_autograd_off_still_fits_and_loads(tmp_path):
    """Services turn autograd off for good (torch.set_grad_enabled(False)) or run handlers under
    torch.inference_mode(): a fit failed there ("element 0 of tensors does not require grad"),
    and a model loaded under inference_mode, from the second load on, failed at its predict
    ("Inference tensors do not track version counter"). Each works as outside, and the caller's mode stays off."""
    import torch

    X, y = _blobs()
    clf = FewShotClassifier(encoder="mlp", strategy="finetune", strategy_params={"epochs": 1})
    expected = clf.fit(X, y).predict_proba(X)
    with torch.set_grad_enabled(False):
        np.testing.assert_array_equal(clf.fit(X, y).predict_proba(X), expected)
        assert not torch.is_grad_enabled()
    texts = ["what is my balance", "send money to mom", "my balance please", "transfer cash to savings"]
    FewShotClassifier().fit(texts, list("btbt")).save(tmp_path / "text")  # its encoder's features are cached
    with torch.inference_mode():
        np.testing.assert_array_equal(clf.fit(X, y).predict_proba(X), expected)
        for new_text in ("how much is in my account", "show my balance now"):  # the second load failed
            assert list(FewShotClassifier.load(tmp_path / "text").predict([new_text])) == ["b"]
        assert torch.is_inference_mode_enabled()


def test_a_float64_default_dtype_is_refused_in_one_line_and_left_as_it_is(tmp_path):
    """torch.set_default_dtype(torch.float64), as scientific code sets it, built float64 layers
    that then met float32 inputs: a torch RuntimeError deep in the fit or the loaded model's first
    predict. The default belongs to the whole process (changing it for the call would change it
    for the caller's other threads too), so it is named, and left alone."""
    import torch

    X, y = _blobs()
    FewShotClassifier(encoder="mlp").fit(X, y).save(tmp_path / "m")
    torch.set_default_dtype(torch.float64)
    try:
        with pytest.raises(ValueError, match=r"default dtype is float64 \(torch.set_default_dtype\).*float32"):
            FewShotClassifier(encoder="mlp").fit(X, y)
        with pytest.raises(ValueError, match=r"default dtype is float64"):
            FewShotClassifier.load(tmp_path / "m").predict(X)
        assert torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(torch.float32)


def test_a_folder_another_save_wrote_meanwhile_is_not_replaced_without_force(tmp_path, monkeypatch):
    """Two notebooks saving to one path at once: both found it free, and the later save moved the
    other's finished model aside and deleted it, silently, without force=True. The later now fails
    in one line and leaves the other's model whole; with force=True it replaces it."""
    import quickadapt.artifact as artifact
    from quickadapt.errors import BadInput

    X, y = _blobs()
    ours, theirs = FewShotClassifier(encoder="mlp").fit(X, y), FewShotClassifier(encoder="mlp", seed=5).fit(X, y)
    real = artifact.save_file
    other = []

    def the_other_saves_meanwhile(tensors, path):
        if not other:  # while our weights are written, the other notebook's save runs whole
            other.append(True)
            theirs.save(tmp_path / "m")
        real(tensors, path)

    monkeypatch.setattr(artifact, "save_file", the_other_saves_meanwhile)
    with pytest.raises(BadInput, match="m appeared while this model was written .*pass force=True to replace it"):
        ours.save(tmp_path / "m")
    assert FewShotClassifier.load(tmp_path / "m").get_params()["seed"] == 5
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temp folder left
    ours.save(tmp_path / "m", force=True)
    assert FewShotClassifier.load(tmp_path / "m").get_params()["seed"] == ours.seed


def test_predict_and_predict_top_hold_a_chunk_of_probabilities_at_once(monkeypatch):
    """predict and predict_top keep a label and a few scores of each input: they read the
    probabilities a chunk at a time, as the command line does, where holding every row's at once
    grew with inputs x classes (10,000 inputs of a 10,000-class catalogue: 763 and 1,525 MB)."""
    import tracemalloc

    import quickadapt.model as model_module

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(300, 8))
    clf = FewShotClassifier(encoder="mlp").fit(np.repeat(centres, 2, axis=0), np.repeat(np.arange(300), 2))
    x = np.repeat(centres, 70, axis=0) + rng.normal(scale=0.1, size=(21_000, 8))
    proba = clf.predict_proba(x)  # 21,000 x 300 float32: 25 MB
    monkeypatch.setattr(model_module, "PREDICT_CHUNK", 500)
    for predict in (lambda: clf.predict(x), lambda: clf.predict_top(x, 3)):
        tracemalloc.start()
        answer = predict()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < proba.nbytes / 3, peak
    assert np.array_equal(clf.predict(x), clf.classes_[proba.argmax(1)])
    labels, scores = clf.predict_top(x, 3)
    assert np.array_equal(labels[:, 0], clf.predict(x)) and np.array_equal(scores, -np.sort(-proba, axis=1)[:, :3])


def test_many_classes_are_looked_up_once(tmp_path):
    """Reading labels as a model's classes (evaluate's test labels, load's columns) scanned the
    classes once for each label: 4.5 s each for 10,000 classes. Each label is now looked up, not
    compared with every class (300 classes: 300 comparisons, where the scans made 45,000)."""
    from counting_label import counting_label_class

    compared = []
    Label = counting_label_class(compared)

    x = np.random.default_rng(0).normal(size=(300, 8))
    clf = FewShotClassifier(encoder="mlp").fit(x, [f"c{i}" for i in range(300)])
    test = [Label(f"c{i}") for i in range(299, -1, -1)] + [Label("unknown")]
    read = clf.model_.as_classes(test)
    assert read.tolist() == [str(t) for t in test] and len(compared) <= 2 * len(test)
    clf.save(tmp_path / "m")
    assert np.array_equal(FewShotClassifier.load(tmp_path / "m").predict(x), clf.predict(x))


def test_predict_top_ranks_classes_as_predict_proba_and_predict_do():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    clf = FewShotClassifier(encoder="mlp").fit(x[:200], y[:200])
    labels, scores = clf.predict_top(x[200:300], 3)
    proba = clf.predict_proba(x[200:300])
    assert labels.shape == scores.shape == (100, 3) and labels.dtype == clf.classes_.dtype  # the caller's ints
    assert np.array_equal(labels[:, 0], clf.predict(x[200:300]))
    assert np.array_equal(scores, -np.sort(-proba, axis=1)[:, :3])
    assert np.array_equal(scores, np.take_along_axis(proba, np.searchsorted(clf.classes_, labels), axis=1))
    assert clf.predict_top(x[200:202], 50)[0].shape == (2, 10)  # every class where there are fewer than asked
    # abstaining, predict withholds what the ranking still names
    unsure = clf.set_params(threshold=0.99, none_label=-1).predict(x[200:300])
    assert 0 < np.sum(unsure == -1) < 100
    assert np.array_equal(clf.predict_top(x[200:300], 3)[0], labels)
    with pytest.raises(ValueError, match="k is how many classes to list"):
        clf.predict_top(x[:2], 0)
