"""Every domain adaptation method on two fixed, small, real shifts where source-only loses more
than 10 points against a model trained on the target itself:

- digits-rot35: scikit-learn's handwritten digits (64 pixels) -> the other digits rotated 35
  degrees (source-only about 33 %, in-domain about 95 %);
- surf-A-W: Office-Caltech10 SURF features, amazon -> webcam (source-only about 41 %, in-domain
  logistic regression about 72 %).

Each method must beat source-only on target accuracy (by at least half a point) and shrink the
discrepancy (Gaussian MMD) between source and target bottleneck features. Where a method does
not, it is listed below with the measured reason, as a strict xfail (so a fix shows up)."""
import functools

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from domain_data import rotated_digits, surf
from quickadapt.domain import create_method, list_methods
from quickadapt.domain.base import DomainContext, representation
from quickadapt.domain.discrepancy import gaussian_mmd2
from quickadapt.encoders import create_encoder
from quickadapt.train import seed_everything

STEPS = 400
SHIFTS = {"digits-rot35": lambda: rotated_digits(35.0), "surf-A-W": lambda: (surf("A"), surf("W"))}
METHODS = [m for m in list_methods() if m != "source-only"]

# (method, shift): why it does not beat source-only there (figures measured with this file's settings)
NOT_BETTER = {
    ("reweight", "digits-rot35"): "rotated digits lie outside the source's support; reweighting source examples "
    "cannot create what no source example looks like",
    ("mmd", "surf-A-W"): "aligning SURF bag-of-words features by kernel mean embeddings does not carry the "
    "class structure across amazon -> webcam (40.0 % vs 41.0 %)",
    ("coral", "surf-A-W"): "matching the class-score covariances costs accuracy here (38.6 % vs 41.0 %)",
}
# (method, shift): why the source/target discrepancy of its features does not shrink
NOT_ALIGNED = {
    ("reweight", "digits-rot35"): "reweight changes how source examples count, not the features: no alignment term",
    ("centroids", "digits-rot35"): "centroids relabels the target by clustering and moves no features: its space is "
    "the raw pixels, where rotated and upright digits lie further apart than in source-only's learned bottleneck",
    ("meda", "digits-rot35"): "meda's alignment term acts on its kernel classifier's outputs, not on features: its "
    "space is a fixed linear map (GFK) of the raw pixels, where the domains stay further apart (MMD 0.29) than in "
    "source-only's learned bottleneck (0.22)",
}


def _expect(table, method, shift):
    reason = table.get((method, shift))
    return [pytest.param(method, shift, marks=pytest.mark.xfail(strict=True, reason=reason))] if reason else [(method, shift)]


@functools.lru_cache(maxsize=None)
def fit(method: str, shift: str):
    source, target = SHIFTS[shift]()
    seed_everything(0)
    encoder = create_encoder("mlp", in_dim=source.inputs.shape[1], depth=1, dropout=0.5)
    model = create_method(method, steps=STEPS).fit(encoder, source, target.without_labels(), DomainContext(progress=False))
    labels, _ = model.predict(target.inputs)
    zs, _ = representation(model, source.inputs)
    zt, _ = representation(model, target.inputs)
    return float(np.mean(np.asarray(labels) == target.labels)), gaussian_mmd2(zs, zt)


@pytest.mark.parametrize("shift", list(SHIFTS))
def test_source_only_loses_at_least_10_points(shift):
    source, target = SHIFTS[shift]()
    in_domain = cross_val_score(LogisticRegression(C=1.0, max_iter=2000), target.inputs, target.labels, cv=3).mean()
    accuracy, _ = fit("source-only", shift)
    assert accuracy <= in_domain - 0.10, (accuracy, in_domain)


@pytest.mark.parametrize("method,shift", [p for m in METHODS for s in SHIFTS for p in _expect(NOT_BETTER, m, s)])
def test_method_beats_source_only(method, shift):
    accuracy, _ = fit(method, shift)
    baseline, _ = fit("source-only", shift)
    assert accuracy >= baseline + 0.005, f"{method} {accuracy:.3f} vs source-only {baseline:.3f}"


@pytest.mark.parametrize("method,shift", [p for m in METHODS for s in SHIFTS for p in _expect(NOT_ALIGNED, m, s)])
def test_method_shrinks_the_discrepancy(method, shift):
    _, mmd = fit(method, shift)
    _, baseline = fit("source-only", shift)
    assert mmd < baseline, f"{method} MMD {mmd:.4f} vs source-only {baseline:.4f}"


def test_registry_and_settings():
    from quickadapt.errors import BadInput

    assert set(list_methods()) == {
        "source-only", "dann", "mmd", "coral", "cdan", "cdan-e", "mcc", "self-training", "reweight", "centroids", "meda",
    }
    with pytest.raises(BadInput, match="did you mean"):
        create_method("cdann")
    with pytest.raises(BadInput, match="threshold"):
        create_method("self-training", threshold=1.5)
    with pytest.raises(BadInput, match="unknown setting 'temprature'"):
        create_method("mcc", temprature=2.0)


def test_centroids_cluster_the_target_from_the_source_guess():
    """Two well-separated target clusters that the source classifier half-mislabels: k-means
    from its probabilities recovers them; a class that loses every member keeps a centroid."""
    from quickadapt.domain.centroids import cluster_target

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal([5, 0], 0.5, (50, 2)), rng.normal([0, 5], 0.5, (50, 2))])
    truth = np.repeat([0, 1], 50)
    guess = np.where(rng.random(100) < 0.35, 1 - truth, truth)  # 35 % wrong
    proba = np.full((100, 3), 0.05)
    proba[np.arange(100), guess] = 0.9  # class 2: never the top guess
    centroids = cluster_target(x, proba, iters=3)
    labels = (x @ centroids.T).argmax(1)
    assert (labels == truth).all()
    assert np.isfinite(centroids).all() and np.allclose(np.linalg.norm(centroids, axis=1), 1)


def test_gfk_of_one_subspace_is_the_projection_onto_it():
    """Source and target spanning the same subspace: no geodesic to walk, so the geodesic flow
    kernel is the projection onto that subspace; between different ones it stays symmetric PSD."""
    from quickadapt.domain.meda import gfk_sqrt, pca_basis

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 12)) @ rng.normal(size=(12, 12))
    root = gfk_sqrt(x, x, 3)
    ps = pca_basis(x, 3)
    np.testing.assert_allclose(root @ root.T, ps @ ps.T, atol=1e-6)
    other = gfk_sqrt(x, rng.normal(size=(150, 12)), 3)
    g = other @ other.T
    np.testing.assert_allclose(g, g.T, atol=1e-9)
    assert np.linalg.eigvalsh(g).min() > -1e-9


def test_meda_solves_on_a_subsample_and_still_labels_every_target_example():
    source, target = surf("A"), surf("W")
    model = create_method("meda", max_points=120).fit(
        create_encoder("mlp", in_dim=source.inputs.shape[1]), source, target.without_labels(), DomainContext(progress=False))
    info = model.info["train"]
    assert info["n_source_solved"] + info["n_target_solved"] <= 121  # stratified rounding may add one
    assert info["n_target_solved"] == 60
    labels, scores = model.predict(target.inputs)
    assert len(labels) == len(target) and set(labels) <= set(source.classes)
    assert np.mean(np.asarray(labels) == target.labels) > 0.2  # 10 classes: chance is 10 %


def test_meda_temperature_stays_finite_when_every_held_out_example_is_right():
    """Outputs that rank all n examples right: plain log-loss would want an infinite temperature
    (scores of 1 at any accuracy); the rule of succession keeps the mean top score near (n+1)/(n+2)."""
    from quickadapt.domain.meda import fit_scale

    rng = np.random.default_rng(0)
    y = np.arange(60) % 10
    f = rng.normal(0, 0.05, (60, 10))
    f[np.arange(60), y] += 0.3
    scale = fit_scale(f, y)
    z = scale * f
    p = np.exp(z - z.max(1, keepdims=True))
    top = (p / p.sum(1, keepdims=True)).max(1)
    assert scale < 0.5 * np.exp(6) and abs(top.mean() - 61 / 62) < 0.02, (scale, top.mean())
    assert np.array_equal((z).argmax(1), y)  # a temperature never changes the ranking


def test_meda_fits_its_softmax_temperature_on_source_it_did_not_solve():
    """The kernel classifier interpolates the source it was solved on, so a temperature fitted
    there is too confident; meda fits it on a held-out fifth of the source instead. On source
    examples it never saw, that temperature must give a lower log-loss than the in-sample one."""
    from quickadapt.domain.meda import fit_scale
    from quickadapt.domain.validate import split_source

    source, target = surf("A"), surf("W")
    train, held = split_source(source, 0.2, seed=0)
    model = create_method("meda").fit(
        create_encoder("mlp", in_dim=source.inputs.shape[1]), train, target.without_labels(), DomainContext(progress=False))
    head = model.heads["main"]
    assert model.info["train"]["scale_fitted_on"].startswith("held-out source")
    names = list(model.classes["main"])

    def raw_outputs(d):  # f = K beta, before the temperature
        return model.heads["main"](torch.as_tensor(model.features(d.inputs))).numpy() / head.scale

    y_train = np.array([names.index(c) for c in train.labels])
    in_sample = fit_scale(raw_outputs(train), y_train)
    assert in_sample > head.scale  # in-sample: more confident

    f_held, y_held = raw_outputs(held), np.array([names.index(c) for c in held.labels])

    def log_loss(scale):
        z = scale * f_held
        z = z - z.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(y_held)), y_held]))

    assert log_loss(head.scale) < log_loss(in_sample)


def test_meda_ensemble_predicts_the_mean_of_its_members_probabilities(tmp_path):
    """`ensemble` fits meda once per (lamb, dim) of its fixed grid and averages the class
    probabilities: each member exactly as meda with that lamb and dim fits alone (same examples,
    same seed), so the bench's averaging of separate fits is what a library user gets. The model
    saves and loads (safetensors + JSON) with the same predictions."""
    from quickadapt.artifact import load_model, save_model
    from quickadapt.domain.meda import ENSEMBLE_GRID

    source, target = surf("D"), surf("W")

    def fit(**params):
        return create_method("meda", **params).fit(
            create_encoder("mlp", in_dim=source.inputs.shape[1]), source, target.without_labels(), DomainContext(progress=False))

    ensemble = fit(ensemble=True)
    members = np.mean([fit(**point).predict_proba(target.inputs) for point in ENSEMBLE_GRID], axis=0)
    proba = ensemble.predict_proba(target.inputs)
    assert len(ENSEMBLE_GRID) == 9 and {(p["lamb"], p["dim"]) for p in ENSEMBLE_GRID} == {
        (lamb, dim) for lamb in (1.0, 10.0, 100.0) for dim in (10, 20, 30)}
    np.testing.assert_allclose(proba, members, atol=1e-6)
    assert [m["lamb"] for m in ensemble.info["train"]["ensemble"]] == [p["lamb"] for p in ENSEMBLE_GRID]
    head = ensemble.heads["main"].config()
    assert head["kind"] == "kernel-ensemble" and len(head["members"]) == 9
    again = load_model(save_model(ensemble, tmp_path / "m"))
    assert np.array_equal(again.predict_proba(target.inputs), proba)
    assert again.strategy_params["ensemble"] is True
    # what it used: the grid's values, not the single lamb=10, dim=20 that no member read
    assert again.strategy_params["lamb"] == [1.0, 10.0, 100.0] and again.strategy_params["dim"] == [10, 20, 30]
    assert fit().strategy_params["lamb"] == 10.0  # a single meda's own
