"""Label-free validators: the risk estimators' arithmetic, density ratios on a real shift, and
that the validator ranks a trained model above an untrained one without target labels."""
import numpy as np
import pytest

from domain_data import surf
from quickadapt.data import load_dataset
from quickadapt.domain import create_method
from quickadapt.domain.base import DomainContext
from quickadapt.domain.validate import (
    Validator, density_ratio, dev_risk, dev_terms, entropy_score, im_score, iwv_risk, snd_score, split_source,
)
from quickadapt.encoders import create_encoder
from quickadapt.errors import BadInput
from quickadapt.train import seed_everything


def test_risks_reduce_to_the_mean_loss_under_uniform_weights():
    losses = np.array([0.1, 0.5, 2.0, 0.4])
    ones = np.ones(4)
    assert iwv_risk(losses, ones) == pytest.approx(losses.mean())
    assert dev_risk(losses, ones) == pytest.approx(losses.mean())  # no weight variance: no control variate
    w = np.array([0.0, 0.0, 2.0, 2.0])
    assert iwv_risk(losses, w) == pytest.approx((2.0 * 2 + 0.4 * 2) / 4)


def test_dev_control_variate_cancels_weight_noise():
    # losses constant: any weighted mean is noisy around it, the control variate recovers it exactly
    rng = np.random.default_rng(0)
    w = rng.exponential(size=200)
    w = w / w.mean() * 1.3  # weights whose mean is off by 30%
    assert iwv_risk(np.ones(200), w) == pytest.approx(1.3)
    assert dev_risk(np.ones(200), w) == pytest.approx(1.0)
    # per example (what pairs two models' DEV on the same held-out examples): their mean is the risk
    losses = rng.exponential(size=200)
    assert dev_terms(losses, w).shape == (200,) and dev_terms(losses, w).mean() == pytest.approx(dev_risk(losses, w))


def test_the_dev_lead_counts_the_noise_of_an_eta_fitted_to_one_weight():
    """Nearly every weight at the clip floor (domains that barely overlap) and one above it: eta
    rests on that one example and shifts every term alike, so the terms' paired spread is tiny
    and a lead read from them was thousands of standard errors (coral on digits: 9133.2). The
    jackknife refits eta without each example: one example is then seen to carry the lead."""
    from quickadapt.evaluate.cv import paired_lead_se
    from quickadapt.domain.validate import dev_pseudo_values

    rng = np.random.default_rng(0)
    loss = rng.uniform(0.5, 1.2, 180)
    other = loss + rng.normal(0, 0.01, 180)  # a model answering almost alike
    w, floor = np.full(180, 0.1), np.full(180, 0.1)
    w[7] = 0.1207
    assert abs(paired_lead_se(dev_terms(loss, floor), dev_terms(other, w))) > 100
    lead = paired_lead_se(dev_terms(loss, floor), dev_terms(other, w),
                          noise=(dev_pseudo_values(loss, floor), dev_pseudo_values(other, w)))
    assert abs(lead) < 5
    # where eta is well supported, the pseudo-values' mean is the risk, as the terms' is
    spread = rng.uniform(0.2, 3.0, 180)
    assert dev_pseudo_values(loss, spread).mean() == pytest.approx(dev_risk(loss, spread), abs=0.05)


def test_density_ratio_upweights_source_examples_that_look_like_the_target():
    # real digits; the target is contrast-inverted digits, and a third of the source is inverted too
    digits = load_dataset("builtin:digits-features")
    x = np.asarray(digits.inputs, dtype=np.float32)
    order = np.random.default_rng(0).permutation(len(x))
    plain, inverted_src, target = order[:1000], order[1000:1400], order[1400:]
    xs = np.concatenate([x[plain], 16 - x[inverted_src]])
    weights = density_ratio(xs, 16 - x[target], seed=0)
    assert weights.shape == (len(xs),) and weights.mean() == pytest.approx(1.0)
    assert weights[1000:].mean() > 5 * weights[:1000].mean()


def test_entropy_and_snd():
    confident = np.eye(4)[np.arange(40) % 4] * 0.97 + 0.01
    unsure = np.full((40, 4), 0.25)
    assert entropy_score(confident) < entropy_score(unsure)
    assert entropy_score(unsure) == pytest.approx(np.log(4))
    one_class = np.tile([0.97, 0.01, 0.01, 0.01], (40, 1))  # confident, but everything in one class
    assert im_score(confident) > 1.0 > im_score(unsure) + 0.5 and im_score(one_class) < 0.01
    for p in (confident, unsure):
        assert 0 <= snd_score(p) <= np.log(39) + 1e-6
    # clustered predictions: each example's soft neighbourhood is its own class (about 9 neighbours)
    assert snd_score(confident) == pytest.approx(np.log(9), abs=0.05)


def test_split_source_is_stratified_and_seeded():
    d = surf("D")
    train, val = split_source(d, 0.2, seed=3)
    assert len(train) + len(val) == len(d) and set(val.classes) == set(d.classes)
    again = split_source(d, 0.2, seed=3)[1]
    assert np.array_equal(val.inputs, again.inputs)


def test_validator_prefers_a_trained_model_without_target_labels():
    source, target = split_source(surf("D"), 0.25, seed=0)[0], surf("W").without_labels()
    val = split_source(surf("D"), 0.25, seed=0)[1]
    validator = Validator(val, target, seed=0)
    models = {}
    for steps in (2, 300):
        seed_everything(0)
        enc = create_encoder("mlp", in_dim=800, depth=1, dropout=0.5)
        models[steps] = create_method("source-only", steps=steps).fit(enc, source, target, DomainContext(progress=False))
    scores = {k: validator.scores(m) for k, m in models.items()}
    assert set(scores[2]) == {
        "source_val_accuracy", "dev_risk", "dev_weight_mean", "iwv_risk", "target_entropy", "target_class_entropy", "im", "snd",
    }
    assert scores[300]["dev_risk"] < scores[2]["dev_risk"]
    assert scores[300]["iwv_risk"] < scores[2]["iwv_risk"]
    assert validator(models[300]) < validator(models[2])  # the call is the selection criterion
    again, terms = validator.scores_and_terms(models[300])
    assert again == scores[300] and len(terms["dev"]) == len(terms["iwv"]) == len(val)
    assert terms["dev"].mean() == pytest.approx(again["dev_risk"]) and terms["iwv"].mean() == pytest.approx(again["iwv_risk"])
    with pytest.raises(BadInput, match="criterion"):
        Validator(val, target, criterion="accuracy")


def test_checkpoint_selection_keeps_the_state_the_validator_prefers():
    d, target = surf("D"), surf("W").without_labels()
    train, val = split_source(d, 0.25, seed=0)
    validator = Validator(val, target, seed=0)
    seed_everything(0)
    enc = create_encoder("mlp", in_dim=800, depth=1, dropout=0.5)
    ctx = DomainContext(progress=False, score=validator)
    model = create_method("source-only", steps=200, checkpoints=4).fit(enc, train, target, ctx)
    info = model.info["train"]
    assert info["selected_step"] in (50, 100, 150, 200)
    assert validator(model) == pytest.approx(info["selected_score"], rel=1e-5)


# --- the negative-transfer guard and method="auto" ------------------------------------------

def test_auto_falls_back_to_source_only_when_adaptation_collapses():
    from domain_data import rotated_digits
    from quickadapt.domain import adapt_domain

    source, target = rotated_digits(35.0)
    # self-training without class balancing collapses on this shift: every rotated digit ends up
    # in one class. The weighted-source validator cannot see that; the collapse check can.
    model = adapt_domain(source, target.without_labels(), "auto", {"steps": 300, "balance": False}, seed=0, device="cpu",
                         target_test=target, candidates=("self-training",), progress=False)
    info = model.info
    assert info["domain_method"] == "source-only" and info["negative_transfer"] is True
    assert info["methods"]["self-training"]["collapsed"] is True
    assert info["methods"]["self-training"]["target_test_accuracy"] < info["methods"]["source-only"]["target_test_accuracy"]
    assert any("collapse" in w and "fell back to source-only" in w for w in info["warnings"])
    assert model.strategy == "domain:source-only"


def test_a_named_method_worse_than_source_only_on_the_target_test_is_said_to_be():
    """A named method is kept whatever the guard says; with a labelled target test the result
    said only each fit's accuracy and the label-free verdict, never that adaptation measurably
    hurt. Now the comparison with source-only (same held-out split) gives a verdict, and a worse
    one is a warning."""
    from domain_data import rotated_digits
    from quickadapt.domain import adapt_domain

    source, target = rotated_digits(35.0)
    model = adapt_domain(source, target.without_labels(), "self-training", {"steps": 300, "balance": False}, seed=0,
                         device="cpu", target_test=target, progress=False)
    info, methods = model.info, model.info["methods"]
    versus = info["target_test_vs_source_only"]
    assert versus["accuracy"] == methods["self-training"]["target_test_accuracy"]
    assert versus["source_only_accuracy"] == methods["source-only"]["target_test_accuracy"]
    assert versus["verdict"] == "worse" and versus["p_worse"] < 0.05 and versus["n"] == len(target)
    assert versus["only_source_only_right"] > versus["only_adapted_right"]
    worse = [w for w in info["warnings"] if "on the target test self-training is WORSE than source-only" in w]
    assert len(worse) == 1 and "negative transfer" in worse[0] and "method source-only keeps the baseline" in worse[0]
    assert info["domain_method"] == "self-training"  # evaluation only: it chooses nothing


def test_auto_keeps_a_method_that_helps_and_routes_each_setting_to_its_method():
    from domain_data import rotated_digits
    from quickadapt.domain import adapt_domain

    source, target = rotated_digits(35.0)
    model = adapt_domain(source, target.without_labels(), "auto", {"steps": 300, "temperature": 2.5}, seed=0,
                         device="cpu", target_test=target, candidates=("mcc",), progress=False)
    methods = model.info["methods"]
    assert model.info["domain_method"] == "mcc" and model.info["negative_transfer"] is False
    # read raw, source-only scored 31 % and mcc 60 %; centred by source and target together (the
    # mlp's input statistics), source-only reads the rotation better (43 %) and mcc leads by 5 points
    assert methods["mcc"]["target_test_accuracy"] > methods["source-only"]["target_test_accuracy"] + 0.03
    assert model.info["target_test_vs_source_only"]["verdict"] == "better"
    assert not any("WORSE than source-only" in w for w in model.info["warnings"])
    assert not any("answers most target inputs" in w for w in model.info["warnings"])  # an ordinary shift, adapted well
    assert model.strategy_params["temperature"] == 2.5 and model.strategy_params["steps"] == 300
    with pytest.raises(BadInput, match="none of source-only, mcc takes it"):
        adapt_domain(source, target, "auto", {"threshold": 0.5}, candidates=("mcc",), progress=False)


def test_a_kept_model_that_answers_the_target_with_few_classes_is_warned_about(monkeypatch):
    """The guard compared methods with source-only only: source-only itself at chance, with
    every target answer in one class, was kept without a word. The warning changes nothing else."""
    import quickadapt.domain.adapt as adapt_module
    from domain_data import faded_onto_a_one
    from quickadapt.domain import adapt_domain

    source, target = faded_onto_a_one()
    for method, candidates in (("source-only", ()), ("auto", ("mcc",))):
        model = adapt_domain(source, target.without_labels(), method, {"steps": 200}, seed=0, device="cpu",
                             target_test=target, candidates=candidates, progress=False)
        labels, _ = model.predict(target.inputs)
        assert np.unique(labels, return_counts=True)[1].max() > 0.9 * len(target)  # the collapse itself
        assert model.info["target_test_accuracy"] < 0.15  # 10 classes: chance is 10 %
        few = [w for w in model.info["warnings"] if "answers most target inputs with few classes" in w]
        assert len(few) == 1 and "domains look too far apart" in few[0], model.info["warnings"]
        assert f"({model.info['domain_method']})" in few[0]
    assert model.info["domain_method"] in ("source-only", "mcc")  # auto's choice is its own business
    monkeypatch.setattr(adapt_module, "FEW_CLASSES_FRACTION", 0.0)  # the check never fires
    quiet = adapt_domain(source, target.without_labels(), "auto", {"steps": 200}, seed=0, device="cpu",
                         target_test=target, candidates=("mcc",), progress=False)
    assert quiet.info["warnings"] == [w for w in model.info["warnings"] if "answers most target inputs" not in w]
    drop_seconds = lambda info: {n: {k: v for k, v in m.items() if k != "seconds"} for n, m in info["methods"].items()}  # noqa: E731
    assert drop_seconds(quiet.info) == drop_seconds(model.info)
    for key in ("domain_method", "target_test_accuracy", "negative_transfer"):
        assert quiet.info.get(key) == model.info.get(key)


def test_a_target_of_fewer_examples_than_classes_is_warned_about_and_not_called_too_far():
    """3 noisy SMS texts as the target of a 15-intent source ran without a word about their number,
    and then warned that the domains look too far apart: 3 answers in 2 classes spread over 0.64
    nats, under half of log 15, though 3 answers can spread over log 3 at most."""
    from domain_data import rotated_digits
    from quickadapt.domain import adapt_domain
    from quickadapt.domain.adapt import few_classes_warning

    two_of_three = float(-(2 / 3 * np.log(2 / 3) + 1 / 3 * np.log(1 / 3)))
    assert few_classes_warning("mcc", two_of_three, 15, 3) is None
    assert few_classes_warning("mcc", two_of_three, 15) is not None  # read against 15 classes, as before
    assert "1.10 for 3 answers in 3 classes" in few_classes_warning("mcc", 0.0, 15, 3)  # one class for all 3 still is
    assert few_classes_warning("mcc", 1.0, 10, 2000) == few_classes_warning("mcc", 1.0, 10)  # many answers: as before

    source, target = rotated_digits(35.0)
    model = adapt_domain(source, target.subset([0, 1, 2]).without_labels(), "source-only", {"steps": 50}, seed=0,
                         device="cpu", progress=False)
    assert any("has 3 examples, fewer than the source's 10 classes" in w for w in model.info["warnings"])
    many = adapt_domain(source, target.subset(range(30)).without_labels(), "source-only", {"steps": 50}, seed=0,
                        device="cpu", progress=False)
    assert not any("fewer than the source's" in w for w in many.info["warnings"])


def test_same_seed_same_model():
    from quickadapt.domain import adapt_domain

    source, target = surf("D"), surf("W").without_labels()
    runs = [adapt_domain(source, target, "cdan-e", {"steps": 40}, seed=7, device="cpu", compare=False, progress=False)
            for _ in range(2)]
    a, b = (m.predict_proba(target.inputs) for m in runs)
    assert np.array_equal(a, b)
    assert runs[0].info["methods"]["cdan-e"]["dev_risk"] == runs[1].info["methods"]["cdan-e"]["dev_risk"]


def test_split_source_keeps_every_class_in_training_when_it_cannot_stratify():
    d = surf("D")
    tiny = d.subset(np.arange(0, len(d), 8))  # 20 examples of 10 classes: too few to stratify 20 %
    train, val = split_source(tiny, 0.2, seed=0)
    assert set(train.classes) == set(tiny.classes) and len(val) == 4 and len(train) == 16
    one_each = d.subset([int(np.flatnonzero(d.labels == c)[0]) for c in d.classes])
    with pytest.raises(BadInput, match="leaves 0 to validate on, and validation needs 2"):
        split_source(one_each, 0.2, seed=0)


def test_the_chosen_method_is_refitted_on_all_of_the_source():
    """The validators choose on a held-out fifth of the source; the saved model then learns
    from all of it (the same method, settings and seed), unless it early-stopped on the
    validator, which needs the held-out part."""
    from quickadapt.domain import adapt_domain

    source, target = surf("A"), surf("W")
    common = dict(seed=0, device="cpu", target_test=target, compare=False, progress=False)
    held_out = adapt_domain(source, target.without_labels(), "meda", refit=False, **common)
    refitted = adapt_domain(source, target.without_labels(), "meda", **common)
    assert held_out.info["refit"] is False and held_out.info["n_source_fit"] == held_out.info["n_source_train"] < len(source)
    assert refitted.info["refit"] is True and refitted.info["n_source_fit"] == len(source)
    assert held_out.info["target_test_accuracy"] == held_out.info["methods"]["meda"]["target_test_accuracy"]
    scores = lambda m: {k: v for k, v in m.info["methods"]["meda"].items() if k != "seconds"}  # noqa: E731
    assert scores(refitted) == scores(held_out)  # the choice was made on the same held-out fit
    assert refitted.heads["main"].support.shape[0] == len(source) + len(target)  # every source example solved
    stopped = adapt_domain(source, target.without_labels(), "source-only", {"steps": 40, "checkpoints": 2}, **common)
    assert stopped.info["refit"] is False


def test_auto_vetoes_a_method_whose_target_predictions_narrow_by_a_fifth(monkeypatch):
    """On typo-noised text, mcc won by DEV while its target predictions spread over classes at
    0.72 of source-only's (entropy of their mean) and it lost 26 points: a drop of a fifth vetoes."""
    from domain_data import rotated_digits
    from quickadapt.domain import adapt_domain
    from quickadapt.domain.validate import Validator

    def scores_and_terms(self, model):  # the validator's figures, as they came out on that text shift
        mcc = model.strategy == "domain:mcc"
        dev = -0.04 if mcc else 0.013
        return ({"dev_risk": dev, "dev_weight_mean": 0.13, "iwv_risk": 0.0, "target_entropy": 0.0,
                 "im": 0.0, "snd": 0.0, "target_class_entropy": 1.45 if mcc else 2.01},
                {"dev": np.full(len(self.source_val), dev), "iwv": np.zeros(len(self.source_val))})

    monkeypatch.setattr(Validator, "scores_and_terms", scores_and_terms)
    source, target = rotated_digits(35.0)
    model = adapt_domain(source, target.without_labels(), "auto", {"steps": 5}, seed=0, device="cpu",
                         candidates=("mcc",), refit=False, progress=False)
    assert model.info["domain_method"] == "source-only" and model.info["methods"]["mcc"]["collapsed"] is True


def test_a_tiny_source_holds_out_two_to_validate_on():
    """Five source examples held out one: the domain classifier's folds then had no source row
    and adapt_domain ended in a traceback."""
    from quickadapt.domain import adapt_domain

    d = surf("A")
    five = d.subset(np.r_[np.flatnonzero(d.labels == d.classes[0])[:4], np.flatnonzero(d.labels == d.classes[1])[:1]])
    train, val = split_source(five, 0.2, seed=0)
    assert len(val) == 2 and set(train.labels) == set(five.labels)
    target = surf("W").subset(np.arange(20)).without_labels()
    model = adapt_domain(five, target, method="source-only", params={"steps": 5}, progress=False)
    assert model.info["n_source_val"] == 2
