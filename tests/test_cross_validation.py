"""The accuracy estimate on the user's own examples: out-of-fold predictions, and classes that
have a single example (trained on in every fold, never scored)."""
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold

from quickadapt.adapt import adapt
from quickadapt.data import Dataset, load_dataset
from quickadapt.data.sampling import sample_per_class
from quickadapt.evaluate.cv import distinct_examples, n_folds, out_of_fold

from cli_helpers import run


class Recorder:
    """A 'model' that remembers what it was trained on and answers its training's first label."""

    def __init__(self):
        self.trained_on = []

    def fit(self, train: Dataset):
        self.trained_on.append(list(train.inputs[:, 0].astype(int)))
        first = train.labels[0]
        return type("M", (), {"predict": lambda _, x: (np.full(len(x), first, dtype=object), np.ones(len(x)))})()


def rows(labels):
    return Dataset("features", np.arange(len(labels), dtype=np.float32)[:, None], np.asarray(labels, dtype=object))


def test_single_example_classes_train_in_every_fold_and_are_never_scored():
    data = rows(list("aaabbbc") + ["d"])  # c and d have one example each (indices 6 and 7)
    rec = Recorder()
    scored, pred, score = out_of_fold(data, rec.fit, n_splits=3, seed=0)
    assert scored.tolist() == [0, 1, 2, 3, 4, 5] and len(pred) == len(score) == 6
    assert len(rec.trained_on) == 3 and all({6, 7} <= set(t) for t in rec.trained_on)
    held_out = [sorted(set(scored) - set(t)) for t in rec.trained_on]
    assert sorted(i for h in held_out for i in h) == [0, 1, 2, 3, 4, 5]  # each scored example held out once


def test_folds_are_unchanged_when_every_class_has_two():
    data = rows(list("aaabbbccc"))
    rec = Recorder()
    scored, _, _ = out_of_fold(data, rec.fit, n_splits=3, seed=5)
    expected = [sorted(tr.tolist()) for tr, _ in
                StratifiedKFold(3, shuffle=True, random_state=5).split(np.zeros(9), data.labels)]
    assert scored.tolist() == list(range(9)) and rec.trained_on == expected


def test_no_estimate_without_two_classes_of_two():
    assert out_of_fold(rows(list("aabc")), Recorder().fit, 3, 0) is None
    assert out_of_fold(rows(list("abcd")), Recorder().fit, 3, 0) is None


def test_adapt_reports_a_partial_estimate_on_real_data():
    digits = load_dataset("builtin:digits")
    few = sample_per_class(digits, 4, seed=0)
    keep = np.flatnonzero(few.labels != "9").tolist() + [int(np.flatnonzero(few.labels == "9")[0])]
    data = few.subset(sorted(keep))  # nine classes of 4, one of 1
    model = adapt(data, encoder="efficientnet-lite0", encoder_params={"size": 64}, strategy="probe", cv=3, progress=False)
    assert model.info["cv_scored"] == 36 and "1 class has one example" in model.info["cv_note"]
    assert 0.5 < model.info["cv_accuracy"] <= 1.0 and model.threshold is not None  # chance: 0.1


def test_more_folds_than_examples_are_capped_and_the_fit_says_so(tmp_path):
    rec = Recorder()
    data = rows(list("aaabbbbc"))  # the smallest class held out has 3 examples; c has one
    out_of_fold(data, rec.fit, n_splits=50, seed=0)
    assert len(rec.trained_on) == n_folds(data, 50) == 3
    assert n_folds(data, 2) == 2 and n_folds(rows(list("aabc")), 3) == 0

    digits = sample_per_class(load_dataset("builtin:digits"), 3, seed=0)
    np.savez(tmp_path / "digits.npz", X=np.stack([np.asarray(x, dtype=np.float32).ravel() for x in digits.inputs]), y=digits.labels.astype(str))
    r = run("fit", "--data", tmp_path / "digits.npz", "--encoder", "mlp", "--cv", "50", "--out", tmp_path / "m", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert "(3 folds, not 50: the smallest class held out has 3 distinct examples)" in r.stdout
    metrics = json.loads((tmp_path / "m" / "manifest.json").read_text())["metrics"]
    assert metrics["cv"] == 50 and metrics["cv_folds"] == 3
    # a class of one is never held out: the line names the smallest class that is
    X = np.stack([np.asarray(x, dtype=np.float32).ravel() for x in digits.inputs])
    np.savez(tmp_path / "one.npz", X=np.concatenate([X, X[:1]]), y=np.append(digits.labels.astype(str), "lone"))
    r = run("fit", "--data", tmp_path / "one.npz", "--encoder", "mlp", "--cv", "50", "--out", tmp_path / "m1", "--quiet")
    assert "(3 folds, not 50: the smallest class held out has 3 distinct examples): " in r.stdout
    assert "1 class has one example" in r.stdout


def test_adapt_reads_paths_as_the_command_line_does(tmp_path):
    import pytest

    from quickadapt.errors import BadInput

    (tmp_path / "f.csv").write_text("f1,f2,label\n" + "".join(f"{i % 5},{i % 2},{'ab'[i % 2]}\n" for i in range(20)))
    model = adapt(tmp_path / "f.csv", encoder="mlp", cv=2, progress=False)
    assert model.info["n_examples"] == 20 and model.info["feature_columns"] == ["f1", "f2"]
    # without an encoder named, the data's kind picks it, as fit does (mlp for feature vectors)
    assert adapt(tmp_path / "f.csv", cv=0, progress=False).encoder.name == "mlp"
    with pytest.raises(BadInput, match="data must be a Dataset or a path"):
        adapt([[0.0, 1.0]], encoder="mlp")


def test_copies_of_an_input_are_held_out_together():
    """A repeated row must not train the fold that scores its twin: that inflated the estimate and
    the abstain threshold calibrated on it."""
    values = [0, 0, 0, 1, 2, 3, 3, 4, 5, 5, 6, 7]  # rows 0-2, 5-6 and 9-10 are copies
    data = Dataset("features", np.asarray(values, dtype=np.float32)[:, None],
                   np.asarray(list("aaaaabbbbbbb"), dtype=object))
    rec = Recorder()  # it records the values each fold trained on
    scored, _, _ = out_of_fold(data, rec.fit, n_splits=3, seed=0)
    assert sorted(scored.tolist()) == list(range(12))
    for trained in rec.trained_on:  # an input trains with all of its copies or with none
        assert all(trained.count(v) == values.count(v) for v in trained)
    held = [sorted(set(values) - set(t)) for t in rec.trained_on]
    assert sorted(v for h in held for v in h) == sorted(set(values))  # each distinct input held out once
    assert n_folds(rows(list("aab") + ["b"]), 3) == 2
    copies = Dataset("features", np.asarray([0, 0, 1, 2], dtype=np.float32)[:, None], np.asarray(list("aabb"), dtype=object))
    assert n_folds(copies, 3) == 0  # class a has one distinct input: nothing to hold out


def test_fit_shows_the_folds_of_its_own_and_the_baseline_cross_validation(monkeypatch, capsys):
    """The folds' fits are silent: five fine-tuning fits (minutes each) showed nothing at all."""
    from quickadapt import progress

    progress.set_quiet(False)
    monkeypatch.setattr(progress, "LOG_EVERY", 0.0)  # capsys's stderr is no terminal: plain lines
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    digits = sample_per_class(Dataset("features", x.astype(np.float32), y.astype(str).astype(object)), 3, seed=0)
    adapt(digits, encoder="mlp", strategy="probe", cv=3, baseline=True)
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if "folds:" in line] == [
        "cross-validation folds: 1/3", "cross-validation folds: 2/3", "cross-validation folds: 3/3",
        "baseline cross-validation folds: 1/3", "baseline cross-validation folds: 2/3",
        "baseline cross-validation folds: 3/3"]


def test_an_input_under_several_labels_is_held_out_row_by_row():
    """Few discrete features with noisy labels: every input recurs under both labels. Grouped by
    input and label, each held-out group met training rows of its input under the other label
    only, and the estimate fell to 23 % against 77.5 % on new rows."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, size=(240, 3)).astype(np.float64)
    y = np.where(rng.random(240) < 0.8, x[:, 0], 1 - x[:, 0]).astype(int).astype(str).astype(object)
    data = Dataset("features", x, y)
    ids = distinct_examples(data)
    assert len(set(ids.tolist())) == 240  # each input has both labels here: every row counts alone
    model = adapt(data, encoder="mlp", strategy="probe", cv=3, progress=False)
    assert 0.7 <= model.info["cv_accuracy"] <= 0.9  # the rule gives 80 % on new rows
    pure = Dataset("features", np.asarray([[0.0], [0.0], [1.0], [1.0], [2.0]]), np.asarray(list("aabbb"), dtype=object))
    assert distinct_examples(pure).tolist() == [0, 0, 1, 1, 2]  # copies under one label stay grouped


class TextRecorder(Recorder):
    def fit(self, train: Dataset):
        model = super().fit(Dataset("features", np.zeros((len(train), 1)), train.labels))
        self.trained_on[-1] = list(train.inputs)  # the texts, not the zeros
        return model


def test_texts_that_differ_only_in_case_or_spaces_are_held_out_together():
    """MiniLM lowercases and strips, so such twins embed identically: held out apart, each fold
    scored texts it had trained on (12 random-label classes with an upper-case twin of every row:
    65 % estimated, chance 8 %)."""
    texts = ["what is my balance", "What is my balance ", "WHAT IS MY  BALANCE", "show my balance",
             "book a flight", "Book a flight", "fly me to rome", "get me a plane ticket", "ｂｏｏｋ a flight"]
    data = Dataset("text", texts, np.asarray(list("aaaabbbbb"), dtype=object))
    assert distinct_examples(data).tolist() == [0, 0, 0, 1, 2, 2, 3, 4, 2]  # full-width letters too (NFKC)
    rec = TextRecorder()
    scored, _, _ = out_of_fold(data, rec.fit, n_splits=2, seed=0)
    twins = {0: [0, 1, 2], 4: [4, 5, 8]}
    for trained in rec.trained_on:  # a text trains with all of its twins or with none
        for group in twins.values():
            assert len({texts[i] in trained for i in group}) == 1


def test_case_twins_do_not_raise_the_estimate_on_random_labels():
    """Real CLINC texts under random labels, each beside its upper-case twin: nothing can be
    learnt, so the estimate must stay near chance (1 in 6)."""
    clinc = load_dataset("builtin:clinc150-train")
    texts = [clinc.inputs[i] for i in np.random.default_rng(0).choice(len(clinc), 30, replace=False)]
    labels = np.random.default_rng(1).choice(list("abcdef"), 30).astype(object)
    twins = Dataset("text", [t for x in texts for t in (x, x.upper())], np.repeat(labels, 2))
    model = adapt(twins, encoder="minilm", strategy="probe", cv=3, progress=False)
    assert model.info["cv_accuracy"] < 0.4


def test_a_source_text_that_differs_only_in_case_is_a_data_text():
    from quickadapt.adapt import shared_inputs

    data = Dataset("text", ["what is my balance", "book a flight"], np.asarray(["a", "b"], dtype=object))
    source = Dataset("text", ["What is my balance?", " WHAT IS MY BALANCE", "set an alarm"],
                     np.asarray(["x", "x", "y"], dtype=object))
    in_data, _ = shared_inputs(source, data)
    assert [k is not None for k in in_data] == [False, True, False]  # the question mark is a real difference


def digits_features(per_class: int) -> Dataset:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return sample_per_class(Dataset("features", x.astype(np.float32), y.astype(str).astype(object)), per_class, seed=0)


def test_copies_count_once_in_the_estimate_its_p_value_and_its_count():
    """Copies share a fold and an input, so they add no evidence: 50 digits written 3 times each
    were 'better than the baseline (McNemar p = 0.039)' over 150 scored rows, the same 50 once
    'within the noise' (p = 0.23)."""
    from quickadapt.evaluate.summary import fit_summary as _fit_summary

    from quickadapt.adapt import mcnemar_greater
    from quickadapt.evaluate.cv import oof_accuracy

    once = digits_features(5)
    triple = np.repeat(np.arange(len(once)), 3)
    thrice = once.subset(triple)
    # the same out-of-fold answers, each copy answered alike: the same figures as the rows once
    rng = np.random.default_rng(0)
    pred, base = (np.where(rng.random(50) < q, once.labels, "0").astype(object) for q in (0.8, 0.6))
    p_once = mcnemar_greater(once, (np.arange(50), pred, None), (np.arange(50), base, None))
    p_thrice = mcnemar_greater(thrice, (np.arange(150), pred[triple], None), (np.arange(150), base[triple], None))
    assert p_thrice == p_once and p_once > 0.001
    assert oof_accuracy(thrice, (np.arange(150), pred[triple], None)) == oof_accuracy(once, (np.arange(50), pred, None))
    # a real fit: the probe on the copies answers as on the rows once, and says of how many
    a = adapt(once, encoder="mlp", cv=3, progress=False).info
    b = adapt(thrice, encoder="mlp", cv=3, baseline=True, progress=False).info
    for key in ("cv_accuracy", "cv_scored"):
        assert a[key] == b[key], key
    assert a["cv_scored"] == 50 and "n_distinct" not in a and b["n_distinct"] == 50
    summary = _fit_summary({**b, "out": "m", "encoder": "mlp", "strategy": "probe"})
    assert "(on 50 distinct examples: copies count once)" in summary and "of 50 held-out examples" in summary
    # a class of one example written three times is one class that is never scored, not three
    lone = Dataset("features", np.concatenate([thrice.inputs, np.repeat(thrice.inputs[:1] + 1, 3, axis=0)]),
                   np.append(thrice.labels, ["lone"] * 3).astype(object))
    c = adapt(lone, encoder="mlp", cv=3, progress=False).info
    assert c["cv_scored"] == 50 and c["n_distinct"] == 51 and c["cv_note"].startswith("1 class has one example")
    assert "(50 of 51 distinct examples; 1 class has one example" in _fit_summary({**c, "out": "m", "encoder": "mlp",
                                                                                    "strategy": "probe"})


def test_the_estimate_comes_with_its_interval_over_the_distinct_examples_scored():
    """fit printed 'cross-validated accuracy (3 folds): 94.0%' for 50 CLINC150 banking examples,
    a figure that reads as far surer than 50 examples allow (Wilson: 83.8-97.9 %); evaluate's
    accuracy had its interval, fit's none. Copies count once in it, as in the figure."""
    from scipy.stats import binomtest

    from quickadapt.evaluate.summary import fit_summary as _fit_summary

    once = digits_features(5)
    thrice = once.subset(np.repeat(np.arange(len(once)), 3))
    a = adapt(once, encoder="mlp", cv=3, progress=False).info
    b = adapt(thrice, encoder="mlp", cv=3, progress=False).info
    right = round(a["cv_accuracy"] * 50)
    ci = binomtest(right, 50).proportion_ci(method="wilson")
    assert a["cv_accuracy_ci95"] == pytest.approx([ci.low, ci.high]) and b["cv_accuracy_ci95"] == a["cv_accuracy_ci95"]
    summary = _fit_summary({**a, "out": "m", "encoder": "mlp", "strategy": "probe"})
    assert (f"cross-validated accuracy (3 folds): {a['cv_accuracy']:.1%} (95% CI {ci.low:.1%}-{ci.high:.1%})"
            in summary.splitlines())
    # a model written before the interval was kept: the line as it was
    old = {k: v for k, v in a.items() if k != "cv_accuracy_ci95"}
    assert f"cross-validated accuracy (3 folds): {a['cv_accuracy']:.1%}" in _fit_summary(
        {**old, "out": "m", "encoder": "mlp", "strategy": "probe"}).splitlines()


def test_without_copies_every_row_counts_as_before():
    from quickadapt.adapt import mcnemar_greater
    from quickadapt.evaluate.cv import mcnemar_p, oof_accuracy

    rng = np.random.default_rng(0)
    data = rows(rng.choice(list("abc"), 60).tolist())  # 60 distinct inputs
    scored = np.arange(60)
    pred, base = (rng.choice(list("abc"), 60).astype(object) for _ in range(2))
    truth = data.labels
    assert oof_accuracy(data, (scored, pred, None)) == float(np.mean(pred == truth))
    assert mcnemar_greater(data, (scored, pred, None), (scored, base, None)) == mcnemar_p(pred == truth, base == truth)
    info = adapt(digits_features(4), encoder="mlp", cv=3, progress=False).info
    assert info["cv_scored"] == 40 and "n_distinct" not in info and "cv_note" not in info


def test_the_abstain_threshold_counts_each_distinct_example_once(monkeypatch):
    """A row written ten times once weighed its confidence ten times in the quantile that sets
    the abstain threshold."""
    import quickadapt.adapt as adapt_module
    from quickadapt.evaluate.cv import IN_SCOPE_KEEP

    once = digits_features(5)  # 50 distinct rows
    rows = np.concatenate([np.arange(50), np.zeros(9, dtype=int)])  # the first row 10 times in all
    data = once.subset(rows)
    scores = np.linspace(0.5, 0.99, 50)
    fake = (np.arange(len(data)), data.labels.copy(), scores[rows])  # copies answered alike, as folds do

    monkeypatch.setattr(adapt_module, "out_of_fold", lambda *a, **k: fake)
    model = adapt(data, encoder="mlp", cv=3, progress=False)
    assert model.threshold == pytest.approx(np.quantile(scores, 1 - IN_SCOPE_KEEP))
    assert model.threshold > np.quantile(scores[rows], 1 - IN_SCOPE_KEEP)  # what counting copies gave


def test_a_fit_keys_each_example_once(monkeypatch):
    """Every figure of a fit with its baseline (folds, accuracy, count, threshold, McNemar's p)
    reads the same distinct examples: keyed once, not once a figure (an image key hashes its file)."""
    import quickadapt.evaluate.cv as cv_module
    from quickadapt.data.dataset import example_key

    calls = []
    monkeypatch.setattr(cv_module, "example_key", lambda x, modality: calls.append(1) or example_key(x, modality))
    data = digits_features(5)
    info = adapt(data, encoder="mlp", cv=3, baseline=True, progress=False).info
    assert "p_transfer_better" in info and len(calls) == len(data)


def digits_big_and_rare(big: int = 40, rare: int = 4, seed: int = 0) -> tuple[Dataset, Dataset]:
    """(training, test) digits feature vectors: classes 0-4 with `big` examples each, 5-9 with
    `rare`, and every other digit of those ten to test on."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    y = y.astype(str).astype(object)
    rng = np.random.default_rng(seed)
    train = [i for c in range(10) for i in rng.permutation(np.flatnonzero(y == str(c)))[:big if c < 5 else rare]]
    test = np.setdiff1d(np.arange(len(y)), train)
    return (Dataset("features", x[train].astype(np.float32), y[train]),
            Dataset("features", x[test].astype(np.float32), y[test]))


@pytest.fixture(scope="module")
def imbalanced_fit():
    """One fit on digits_big_and_rare with its baseline, and the out-of-fold answers it was given."""
    import quickadapt.adapt as adapt_module

    train, test = digits_big_and_rare()
    seen = []
    real = adapt_module.out_of_fold
    adapt_module.out_of_fold = lambda *a, **k: seen.append(real(*a, **k)) or seen[-1]
    try:
        model = adapt(train, encoder="mlp", cv=3, baseline=True, progress=False)
    finally:
        adapt_module.out_of_fold = real
    return model, train, test, seen[0]


def test_rare_classes_keep_about_as_many_answers_as_big_ones(imbalanced_fit):
    """The threshold was a plain quantile of the out-of-fold confidences, set by the big classes
    alone: five digits of 40 examples beside five of 4 had 33 % of the rare digits' test answers
    withheld and 5 % of the big ones'. Each class now weighs alike in the quantile."""
    model, _, test, _ = imbalanced_fit
    withheld = model.predict_proba(test.inputs).max(1) < model.threshold
    rare = np.isin(test.labels, list("56789"))
    assert withheld[rare].mean() <= 0.2 and withheld[rare].mean() - withheld[~rare].mean() <= 0.15


def test_the_class_balanced_threshold_is_the_plain_quantile_when_classes_are_the_same_size():
    """Balanced benchmarks (CLINC's K-shot) report out-of-scope recall at this threshold: with
    classes of one size it must be exactly what np.quantile gave before."""
    from quickadapt.evaluate.cv import IN_SCOPE_KEEP, calibrate_threshold, weighted_quantile

    rng = np.random.default_rng(0)
    for n_classes, per_class in ((2, 3), (10, 5), (150, 10)):
        scores = rng.random(n_classes * per_class)
        labels = np.repeat([f"c{i}" for i in range(n_classes)], per_class).astype(object)
        assert calibrate_threshold(scores, labels) == np.quantile(scores, 1 - IN_SCOPE_KEEP)
    # in general: np.quantile of each score written as many times as its weight
    for _ in range(200):
        n = int(rng.integers(1, 30))
        scores, weights, q = rng.random(n), rng.integers(1, 6, n), rng.random()
        assert weighted_quantile(scores, weights.astype(float), q) == pytest.approx(np.quantile(np.repeat(scores, weights), q))
    # a class of 2 beside one of 18 weighs as much as it in the quantile: its low scores set the threshold
    scores, labels = np.append(np.linspace(0.9, 1.0, 18), [0.3, 0.4]), np.array(list("a" * 18 + "bb"), dtype=object)
    assert calibrate_threshold(scores, labels) < 0.4 < np.quantile(scores, 1 - IN_SCOPE_KEEP)


def test_imbalanced_classes_get_a_balanced_accuracy_too(imbalanced_fit, tmp_path):
    """Beside two intents of 100 examples, one of 2 hardly weighs in a plain accuracy (99.5 %
    out of fold, 69.2 % on a test set of 30 of each): the mean per-class recall is reported too."""
    from quickadapt.evaluate.summary import fit_summary as _fit_summary

    model, train, _, (scored, pred, _) = imbalanced_fit
    info = model.info
    truth = train.labels[scored]
    recalls = [np.mean(pred[truth == c] == c) for c in np.unique(truth)]
    assert info["cv_balanced_accuracy"] == pytest.approx(np.mean(recalls))
    assert info["cv_balanced_accuracy"] != pytest.approx(info["cv_accuracy"])
    assert 0 <= info["baseline"]["cv_balanced_accuracy"] <= 1
    summary = _fit_summary({**info, "out": "m", "encoder": "mlp", "strategy": "probe"})
    assert f"balanced accuracy (mean recall of the classes scored): {info['cv_balanced_accuracy']:.1%}" in summary
    assert "weighs each class by its number of examples" in summary
    # copies count once, as in the plain accuracy
    from quickadapt.evaluate.cv import balanced_accuracy, class_sizes_differ, oof_balanced_accuracy

    assert scored.tolist() == list(range(len(train)))  # every class has 4 or more: all scored
    triple = np.repeat(scored, 3)
    assert (oof_balanced_accuracy(train.subset(triple), (np.arange(len(triple)), pred[triple], None))
            == oof_balanced_accuracy(train, (scored, pred, None)))
    # one pass over the rows, not one for each class: a catalogue of 300 classes compares each of its
    # 600 labels once (a pass per class compared them 180,000 times: 11.9 s at 10,000 classes)
    from counting_label import counting_label_class

    compared = []
    Label = counting_label_class(compared)

    labels = np.array([Label(f"c{i // 2}") for i in range(600)], dtype=object)
    answers = labels.copy()
    answers[::4] = "wrong"
    assert balanced_accuracy(labels, answers) == 0.75 and len(compared) <= 2 * len(labels)
    # up to 3 times the size, and on balanced data, nothing is added
    assert not class_sizes_differ(np.array(list("a" * 9 + "bbb"))) and class_sizes_differ(np.array(list("a" * 10 + "bbb")))
    assert "cv_balanced_accuracy" not in adapt(digits_features(4), encoder="mlp", cv=3, progress=False).info
    # the command line's --json and manifest carry it
    np.savez(tmp_path / "imb.npz", X=np.stack(train.inputs), y=train.labels.astype(str))
    r = run("fit", "--data", tmp_path / "imb.npz", "--encoder", "mlp", "--baseline", "--out", tmp_path / "m", "--json", "--quiet")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["cv_balanced_accuracy"] == pytest.approx(info["cv_balanced_accuracy"])
    assert "cv_balanced_accuracy" in out["baseline"]
    assert json.loads((tmp_path / "m" / "manifest.json").read_text())["metrics"]["cv_balanced_accuracy"] == out["cv_balanced_accuracy"]


def test_the_note_on_one_example_classes_says_they_are_not_in_the_threshold():
    """Classes of one example are never scored, so the threshold is calibrated without them:
    10 such intents beside 10 of 8 had 71.7 % of their test answers withheld, the others 3.3 %."""
    from quickadapt.evaluate.summary import fit_summary as _fit_summary

    data = digits_features(4)
    lone = Dataset("features", np.concatenate([data.inputs, data.inputs[:2] + 1]),
                   np.append(data.labels, ["lone1", "lone2"]).astype(object))
    info = adapt(lone, encoder="mlp", cv=3, progress=False).info
    assert info["cv_note"] == ("2 classes have one example: in every training fold, never scored nor in the abstain "
                               "threshold's calibration, so more of their answers may be withheld")
    assert "(40 of 42 examples; 2 classes have one example" in _fit_summary({**info, "out": "m", "encoder": "mlp",
                                                                            "strategy": "probe"})


def test_texts_that_differ_only_in_invisible_characters_are_held_out_together():
    """MiniLM's tokenizer drops zero-width spaces, a BOM, soft hyphens and control characters, so
    such twins embed identically: 30 CLINC texts under 6 random labels, each beside a twin with a
    zero-width space, were estimated at 80 % (chance 17 %)."""
    texts = ["what is my balance", "wh\u200bat is my balance", "\ufeffwhat is my balance", "what is my ba\u00adlance",
             "what is\x00 my balance", "what is my\tbalance", "whatis my balance", "book a flight"]
    data = Dataset("text", texts, np.asarray(list("aaaaaaab"), dtype=object))
    assert distinct_examples(data).tolist() == [0, 0, 0, 0, 0, 0, 1, 2]  # a tab still parts words


def test_fit_names_the_examples_its_folds_predicted_as_another_class(tmp_path):
    # two digits given another digit's label: the folds' models, which never saw them, say so,
    # and a user fixing labels needs to know which rows to look at
    digits = sample_per_class(load_dataset("builtin:digits-features"), 10, seed=0)
    X, y = np.asarray(digits.inputs, dtype=np.float32), digits.labels.astype(str).copy()
    flipped = {4: "7", 57: "3"}  # rows 5 and 58 as read
    for i, wrong in flipped.items():
        assert y[i] != wrong
        y[i] = wrong
    np.savez(tmp_path / "digits.npz", X=X, y=y)
    r = run("fit", "--data", tmp_path / "digits.npz", "--encoder", "mlp", "--out", tmp_path / "m", "--json", "--quiet")
    assert r.exit_code == 0, r.stderr
    found = json.loads(r.stdout)["cv_disagreements"]
    wrong_rows = {d["row"]: d for d in found}
    assert {5, 58} <= set(wrong_rows)
    for i in flipped:
        d = wrong_rows[i + 1]
        # a feature vector's only name is its position from 0, which beside `row` read as a value: `row` names it
        assert (d["input"], d["label"]) == (None, flipped[i])
    assert [d["score"] for d in found] == sorted((d["score"] for d in found), reverse=True)
    assert len(found) == round((1 - json.loads(r.stdout)["cv_accuracy"]) * 100)  # every one it got wrong
    # the model keeps the rows (not the inputs) with what the fit measured
    kept = json.loads((tmp_path / "m" / "manifest.json").read_text())["info"]["cv_disagreements"]
    assert kept == [{k: v for k, v in d.items() if k != "input"} for d in found]

    text = run("fit", "--data", tmp_path / "digits.npz", "--encoder", "mlp", "--out", tmp_path / "m2", "--quiet").stdout
    assert f"{len(found)} examples predicted as another class out of fold" in text
    assert f"  row {found[0]['row']} labelled {found[0]['label']}, predicted" in text  # no "4" beside row 5


def test_fit_names_a_mislabelled_image_by_its_path_with_the_file_name(tmp_path):
    """A long image path was cut at its end, so the file name, the one part that tells the images of a
    folder apart, was lost ("/.../a_rather_long_folder_name_for_class_2/..."); it is now cut in the middle."""
    from PIL import Image

    from quickadapt.evaluate.summary import disagreements

    rng = np.random.default_rng(0)
    folder = tmp_path / ("x" * 40)
    for c in ("a", "b"):
        (folder / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(folder / c / f"scan_{c}{i:04d}.png")
    r = run("fit", "--data", folder, "--encoder", "conv4", "--out", tmp_path / "m", "--json", "--quiet")
    assert r.exit_code == 0, r.stderr
    found = json.loads(r.stdout)["cv_disagreements"]
    assert found and all(d["input"].endswith(".png") and len(d["input"]) > 60 for d in found)
    shown = disagreements(found)[1]
    assert Path(found[0]["input"]).name + '" labelled' in shown and "..." in shown


NOTICE = ("Please note: this message and any attachments are confidential and intended only for the named "
          "recipient. If you have received it in error, please notify the sender immediately and delete it from "
          "your system. Our support team answers within two working days; for urgent matters call the number on "
          "the back of your card. We will never ask for your password. To help us handle your request faster, "
          "please include your customer number and the last four digits of your card in every reply, and never "
          "send full card numbers by email. Replies to this address are read by our team between 8am and 6pm on "
          "working days; outside these hours, please use the secure message centre in the app.")


def test_long_texts_alike_up_to_where_they_are_cut_are_held_out_together(monkeypatch):
    """MiniLM reads 128 tokens: two long e-mails that differ only after them (a footer, a ticket
    number) embed identically, so they are one example to cross-validate, as copies are. 30 CLINC
    texts under 6 random labels, each an e-mail beside a twin resent with another footer: estimated
    at 86.7 % (63.3 and 70.0 % at other draws; chance 17 %), 16.7 % held out together (10.0, 23.3).
    Texts too short to be cut are never tokenized for it."""
    from quickadapt.encoders import create_encoder

    clinc = load_dataset("builtin:clinc150-train")
    texts = [clinc.inputs[i] for i in np.random.default_rng(0).choice(len(clinc), 30, replace=False)]
    labels = np.random.default_rng(1).choice(list("abcdef"), 30).astype(object)
    mails = [f"Hello,\n\n{t}\n\n{NOTICE}\n\n" for t in texts]
    twins = Dataset("text", [m + footer for m in mails for footer in ("Sent from my iPhone", "Ticket #48213")],
                    np.repeat(labels, 2))
    model = adapt(twins, encoder="minilm", strategy="probe", cv=3, progress=False)
    assert model.info["cv_accuracy"] < 0.4 and model.info["n_distinct"] == 30
    encoder = create_encoder("minilm")
    keys = encoder.read_alike(twins.inputs)
    assert sorted(keys) == list(range(60)) and keys[0] == keys[1] != keys[2]
    assert distinct_examples(twins, keys).tolist() == np.repeat(np.arange(30), 2).tolist()

    calls = []  # tokenizer passes (the fast tokenizer's own reader, which an unbuilt encoder has too)
    real = type(encoder)._token_ids
    monkeypatch.setattr(type(encoder), "_token_ids", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    assert encoder.read_alike(list(clinc.inputs[:3000])) == {} and not calls  # none of them can be cut
    assert list(encoder.read_alike(["short", twins.inputs[0]])) == [1] and calls  # the long one is read
