"""`--strategy auto`: every candidate scored on the same folds of the user's own examples, the
choice by the one-standard-error rule (select/strategy.py), the chosen model saved as usual."""
from __future__ import annotations

import json

import numpy as np
import pytest

from quickadapt.adapt import adapt
from quickadapt.artifact import load_model, read_manifest
from quickadapt.classifier import FewShotClassifier
from quickadapt.data import Dataset, load_dataset
from quickadapt.data.sampling import sample_per_class
from quickadapt.errors import BadInput
from quickadapt.select.strategy import CANDIDATES, MARGIN_SE, _one_se_rule
from tests.cli_helpers import assert_bad_input, run


def rule_says(record: dict) -> str:
    """The first candidate, in the record's (the rule's) order, within MARGIN_SE of the best."""
    return next(n for n, c in record.items() if c["behind_best_se"] is not None and c["behind_best_se"] <= MARGIN_SE)


def test_auto_scores_every_candidate_on_the_folds_fit_reports_and_picks_by_the_rule(clinc_small):
    data = load_dataset(clinc_small["train"])
    model = adapt(data, strategy="auto", cv=3, seed=1, progress=False)
    auto = model.info["auto"]
    assert list(auto["candidates"]) == list(CANDIDATES["text"])
    for name, c in auto["candidates"].items():
        # the same estimate a fit of that candidate alone reports: the same folds, not a CV of its own
        assert c["cv_accuracy"] == adapt(data, strategy=name, cv=3, seed=1, progress=False).info["cv_accuracy"]
        assert c["cv_seconds"] >= 0 and c["behind_best_se"] is not None
    assert auto["chosen"] == model.strategy == rule_says(auto["candidates"])
    assert model.info["cv_accuracy"] == auto["candidates"][model.strategy]["cv_accuracy"]
    assert model.threshold is not None  # calibrated on the chosen candidate's out-of-fold answers
    assert auto["reason"].startswith(f"{model.strategy}: ") and "\n" not in auto["reason"]
    # the saved model is the chosen strategy fitted directly with the same seed
    direct = adapt(data, strategy=model.strategy, cv=3, seed=1, progress=False)
    test = load_dataset(clinc_small["test"])
    np.testing.assert_allclose(model.predict_proba(test.inputs), direct.predict_proba(test.inputs), atol=1e-6)
    assert model.strategy_params == direct.strategy_params and model.threshold == direct.threshold


def test_a_candidate_that_wins_clearly_is_chosen_though_later_in_the_order():
    # digits as feature vectors, 5 per class: a probe regularised to near-uniform answers
    # (probe.C, which reaches the probe alone) against class means, which need no fitting
    data = sample_per_class(load_dataset("builtin:digits-features"), 5, 0)
    model = adapt(data, strategy="auto", strategy_params={"probe.C": 1e-6}, cv=3, progress=False)
    auto = model.info["auto"]["candidates"]
    assert model.strategy == "prototypes" and auto["probe"]["cv_accuracy"] < auto["prototypes"]["cv_accuracy"]
    assert auto["probe"]["behind_best_se"] > MARGIN_SE
    assert model.strategy_params == {"scale": 10.0}  # prototypes' own settings, untouched by probe.C
    assert "the most accurate" in model.info["auto"]["reason"]


def oof(pred: list[str]):
    """An out_of_fold result scoring every example once, answering `pred`."""
    return np.arange(len(pred)), np.asarray(pred, dtype=object), np.ones(len(pred))


@pytest.mark.parametrize("gains,losses,chosen", [(0, 0, "probe"), (1, 0, "probe"), (3, 2, "probe"), (2, 0, "blend"),
                                                  (12, 0, "blend")])
def test_within_one_standard_error_the_earlier_candidate_is_chosen(gains, losses, chosen):
    # 40 examples that probe answers 30 right; blend answers the same, but right on `gains` of the
    # ten probe gets wrong and wrong on `losses` of the thirty it gets right. In standard errors of
    # the paired difference blend's lead is 0 (the same answers), 1.0 (one example), 0.44 (three
    # against two), 1.43 (two against none: more than one) and 4.09
    truth = ["a", "b"] * 20
    flip = {"a": "b", "b": "a"}
    probe = truth[:30] + [flip[t] for t in truth[30:]]
    blend = [flip[t] for t in truth[:losses]] + truth[losses:30 + gains] + probe[30 + gains:]
    data = Dataset("features", np.zeros((40, 2)), truth)
    record = {"probe": {"cv_accuracy": 0.75}, "blend": {"cv_accuracy": float(np.mean(np.array(blend) == truth))}}
    name, reason = _one_se_rule(data, {"probe": oof(probe), "blend": oof(blend)}, np.arange(40), record)
    assert name == chosen and reason.startswith(f"{chosen}: ")
    if gains == losses == 0:  # the same answers: a tie, no spread; the earlier in the order
        assert record["blend"]["behind_best_se"] == 0.0 and "blend within the noise" in reason
    elif chosen == "probe":  # blend leads, by no more than its noise
        assert 0 < record["probe"]["behind_best_se"] <= MARGIN_SE and "behind blend, within the noise" in reason
    else:
        assert record["probe"]["behind_best_se"] > MARGIN_SE and "the most accurate" in reason


def test_the_cli_records_the_choice_in_the_summary_json_and_manifest(clinc_small, tmp_path):
    out = tmp_path / "m"
    r = run("fit", "--data", clinc_small["train"], "--strategy", "auto", "--out", out, "--json", "--quiet")
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout)
    auto = result["auto"]
    assert result["strategy"] == auto["chosen"] in CANDIDATES["text"]
    assert set(auto["candidates"]) == set(CANDIDATES["text"]) and auto["reason"]
    manifest = read_manifest(out)
    assert manifest["strategy"]["name"] == auto["chosen"] and manifest["metrics"]["auto"] == auto
    assert manifest["info"]["auto"]["chosen"] == auto["chosen"]
    # predict and evaluate read it as any model of that strategy
    assert load_model(out).strategy == auto["chosen"]
    ev = run("evaluate", out, "--data", clinc_small["test"], "--json", "--quiet")
    assert ev.exit_code == 0 and json.loads(ev.stdout)["n"] == 180
    human = run("fit", "--data", clinc_small["train"], "--strategy", "auto", "--out", tmp_path / "h", "--quiet")
    assert human.exit_code == 0
    lines = [line for line in human.stdout.splitlines() if line.startswith("auto chose ")]
    assert len(lines) == 1 and all(f"{n} " in lines[0] for n in CANDIDATES["text"])
    assert human.stdout.startswith(f"adapted minilm with {auto['chosen']} ")


def test_settings_reach_their_candidate_only_and_bad_ones_are_one_line(clinc_small, tmp_path):
    data = clinc_small["train"]
    r = run("fit", "--data", data, "--strategy", "auto", "--set", "C=1", "--out", tmp_path / "a")
    assert_bad_input(r, "probe.C=1")  # which candidate a plain key was meant for cannot be guessed
    assert_bad_input(run("fit", "--data", data, "--strategy", "auto", "--set", "lora.r=4", "--out", tmp_path / "b"),
                     "not one of its candidates")
    assert_bad_input(run("fit", "--data", data, "--strategy", "auto", "--set", "probe.C=-1", "--out", tmp_path / "c"),
                     "strategy 'probe'")
    r = run("fit", "--data", data, "--strategy", "auto", "--set", "budget=-5", "--out", tmp_path / "d")
    assert_bad_input(r, "budget")
    assert "CANDIDATE.KEY" not in r.stderr  # auto's own setting, rightly named: no hint about candidates' ones
    assert not any((tmp_path / n).exists() for n in "abcd")
    # a setting of a candidate not tried on text (blend: images only) is noted, not refused
    r = run("fit", "--data", data, "--strategy", "auto", "--set", "blend.weight=0.3", "--set", "probe.C=2",
            "--out", tmp_path / "e", "--json")
    assert r.exit_code == 0 and "does not try blend on text data" in r.stderr
    if json.loads(r.stdout)["strategy"] == "probe":
        assert read_manifest(tmp_path / "e")["strategy"]["params"]["C"] == 2


def test_a_costly_candidate_is_tried_only_within_the_budget(clinc_small):
    data = load_dataset(clinc_small["train"])
    plain = adapt(data, strategy="auto", cv=3, progress=False).info["auto"]
    assert "finetune" not in plain["candidates"]  # no budget: the cheap candidates only
    # a budget the cheap candidates use up: finetune is listed, skipped before its first fold
    tight = adapt(data, strategy="auto", strategy_params={"budget": 1e-6}, cv=3, progress=False).info["auto"]
    assert tight["candidates"]["finetune"] == {"skipped": "over budget: the cheaper candidates took the whole 1e-06 s"}
    assert tight["chosen"] == plain["chosen"]


def test_a_budget_where_no_costly_candidate_exists_is_noted(capsys):
    data = sample_per_class(load_dataset("builtin:digits-features"), 3, 0)
    model = adapt(data, strategy="auto", strategy_params={"budget": 60}, cv=3, progress=False)
    assert list(model.info["auto"]["candidates"]) == list(CANDIDATES["features"])
    assert "tries no costly candidate on features data, so its budget is not used" in capsys.readouterr().err


def test_one_example_per_class_falls_back_to_the_default(clinc_small):
    data = load_dataset(clinc_small["train"])
    one = data.subset([int(np.flatnonzero(data.labels == c)[0]) for c in data.classes])
    model = adapt(one, strategy="auto", cv=3, progress=False)
    assert model.strategy == "probe" and "too few examples per class" in model.info["auto"]["reason"]
    # the documented record: each candidate's estimate or why it has none, and the margin
    assert all("too few examples" in c["skipped"] for c in model.info["auto"]["candidates"].values())
    assert model.info["auto"]["margin_se"] == MARGIN_SE
    assert "cv_accuracy" not in model.info and model.threshold is None


def test_fewshotclassifier_auto_chooses_without_cv_and_refits_by_choosing_again(clinc_small, tmp_path):
    data, test = load_dataset(clinc_small["train"]), load_dataset(clinc_small["test"])
    clf = FewShotClassifier(strategy="auto", strategy_params={"probe.C": 5}).fit(list(data.inputs), list(data.labels))
    info = clf.model_.info
    assert clf.get_params()["strategy"] == "auto" and info["auto"]["chosen"] == clf.model_.strategy
    # cv=0 asks for no estimate: auto still chooses on 3 folds of its own, and reports none
    assert "cv_accuracy" not in info and clf.model_.threshold is None
    direct = FewShotClassifier(strategy=clf.model_.strategy, strategy_params=(
        {"C": 5} if clf.model_.strategy == "probe" else None)).fit(list(data.inputs), list(data.labels))
    assert list(clf.predict(list(test.inputs))) == list(direct.predict(list(test.inputs)))
    clf.save(tmp_path / "m")
    loaded = FewShotClassifier.load(tmp_path / "m")
    assert list(loaded.predict(list(test.inputs))) == list(clf.predict(list(test.inputs)))
    # it remembers auto and the settings per candidate: a refit (a clone's, a grid search's) chooses again
    assert loaded.get_params()["strategy"] == "auto" and loaded.get_params()["strategy_params"] == {"probe.C": 5}
    assert loaded.fit(list(data.inputs), list(data.labels)).model_.info["auto"]["chosen"] == info["auto"]["chosen"]


def test_bad_budget_from_python_names_the_setting(clinc_small):
    with pytest.raises(BadInput, match="budget"):
        adapt(clinc_small["train"], strategy="auto", strategy_params={"budget": "soon"}, progress=False)
