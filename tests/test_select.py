"""Transferability scores (quickadapt.select) and `quickadapt rank`: known orderings on synthetic
data, the invariances the papers state, agreement with the reference computations, the ranking
on small real data, and the bad-input contract."""
import json

import numpy as np
import pytest

from cli_helpers import assert_bad_input, run
from quickadapt.errors import BadInput
from quickadapt.select import SCORES, hscore, leep, logme, nce, nleep, rank


def clusters(separation: float, *, n_per_class: int = 10, n_classes: int = 5, dim: int = 32, seed: int = 0):
    """Gaussian classes whose means lie `separation` apart (in units of the noise), and labels."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    means = rng.normal(size=(n_classes, dim)) * separation
    return means[labels] + rng.normal(size=(len(labels), dim)), labels


def logme_reference(f, y):
    """LogME as the paper's code computes it (You et al., ICML: an eigendecomposition of F^T F,
    alpha and beta updated in turn), run to convergence rather than its 11 steps."""
    n, d = f.shape
    v, s, vh = np.linalg.svd(f.T @ f, full_matrices=True)
    evidences = []
    for c in range(y.max() + 1):
        t = (y == c).astype(np.float64)
        alpha, beta = 1.0, 1.0
        projected = vh @ (f.T @ t)
        for _ in range(1000):
            lam = alpha / beta
            gamma = (s / (s + lam)).sum()
            m = v @ (projected * beta / (alpha + beta * s))
            alpha_de, beta_de = (m * m).sum(), ((t - f @ m) ** 2).sum()
            alpha, beta = gamma / (alpha_de + 1e-12), (n - gamma) / (beta_de + 1e-12)  # the code's epsilon, smaller
            if abs(alpha / beta - lam) / lam < 1e-10:
                break
        evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.sum(np.log(alpha + beta * s))
                    - beta / 2 * beta_de - alpha / 2 * alpha_de - n / 2 * np.log(2 * np.pi))
        evidences.append(evidence / n)
    return float(np.mean(evidences))


@pytest.mark.parametrize("shape", [(200, 10), (30, 100), (50, 50)])
def test_logme_matches_the_papers_computation(shape):
    rng = np.random.default_rng(1)
    f = rng.normal(size=shape)
    y = np.arange(shape[0]) % 4
    f[y == 0] += 0.5  # some signal, so the optimum is not at the edge
    assert logme(f, y) == pytest.approx(logme_reference(f, y), abs=1e-5)


@pytest.mark.parametrize("score", [logme, hscore, nleep])
def test_feature_scores_order_separable_above_random(score):
    separated, labels = clusters(4.0)
    weak, _ = clusters(1.0)
    noise = np.random.default_rng(3).normal(size=separated.shape)
    shuffled = np.random.default_rng(4).permutation(labels)
    assert score(separated, labels) > score(weak, labels) > score(noise, labels)
    assert score(separated, labels) > score(separated, shuffled)


def test_logme_and_hscore_are_invariant_as_the_papers_state():
    f, y = clusters(1.0)
    rotation = np.linalg.qr(np.random.default_rng(5).normal(size=(f.shape[1],) * 2))[0]
    order = np.random.default_rng(6).permutation(len(y))
    renamed = np.array(["c%d" % (4 - v) for v in y])  # other names, another order of classes
    for score in (logme, hscore):
        base = score(f, y)
        assert score(f * 37.0, y) == pytest.approx(base, rel=1e-6)  # the features' scale
        assert score(f[order], y[order]) == pytest.approx(base, rel=1e-9)  # the examples' order
        assert score(f, renamed) == pytest.approx(base, rel=1e-9)  # the classes' names
    assert logme(f @ rotation, y) == pytest.approx(logme(f, y), rel=1e-6)  # isotropic prior


def test_hscore_is_transfer_learning_library_s_regularised_h_score_over_n():
    from sklearn.covariance import LedoitWolf

    f, y = clusters(1.0, dim=60)  # 50 examples, 60 dimensions: the plain covariance is singular
    centred = f - f.mean(axis=0)
    lw = LedoitWolf(assume_centered=False).fit(centred)
    g = np.zeros_like(centred)
    for c in range(5):
        g[y == c] = centred[y == c].mean(axis=0)
    tllib = np.trace(np.linalg.pinv(lw.covariance_, rcond=1e-15) @ ((1 - lw.shrinkage_) * np.cov(g, rowvar=False)))
    n = len(y)
    assert hscore(f, y) == pytest.approx(tllib * (n - 1) / n, rel=1e-9)
    assert 0 < hscore(f, y) < 4  # at most the number of classes less one


def test_leep_and_nce_known_values():
    y = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    exact = np.eye(3)[y]
    assert leep(exact, y) == pytest.approx(0.0, abs=1e-12)
    assert nce(exact, y) == pytest.approx(0.0, abs=1e-12)
    entropy = -(2 / 8 * np.log(2 / 8) * 2 + 4 / 8 * np.log(4 / 8))
    uniform = np.full((8, 4), 0.25)  # a source classifier that says nothing
    assert leep(uniform, y) == pytest.approx(-entropy)  # the best it can do: the class frequencies
    assert nce(np.zeros(8, dtype=int), y) == pytest.approx(-entropy)
    # source class 0 holds targets 0 and 1 alike, 1 holds 2: H(Y | Z) = 4/8 log 2
    assert nce(np.array([0, 0, 0, 0, 1, 1, 1, 1]), y) == pytest.approx(-0.5 * np.log(2))
    soft = 0.7 * exact + 0.3 / 3
    permuted = soft[:, [2, 0, 1]]  # the source classes' order changes nothing
    assert leep(soft, y) == pytest.approx(leep(permuted, y))
    assert leep(uniform, y) < leep(soft, y) < 0
    assert nce(soft, y) == nce(exact, y)  # hard labels: the same argmax


def test_nleep_is_seeded():
    f, y = clusters(1.0)
    assert nleep(f, y, seed=3) == nleep(f, y, seed=3)


@pytest.mark.parametrize("name", ["logme", "hscore", "leep", "nce"])
def test_scores_refuse_what_they_cannot_score(name):
    score = SCORES.get(name)
    f, y = clusters(1.0)
    good = np.eye(5)[y] if score.reads == "source" else f
    bad = good.copy()
    bad[3, 1] = np.nan
    with pytest.raises(BadInput, match="example 3"):
        score(bad, y)
    with pytest.raises(BadInput, match="1 class"):
        score(good, np.zeros(len(y)))
    with pytest.raises(BadInput, match="one per example"):
        score(good, y[:-1])
    # a missing label was one more class (NaN), or a TypeError from sorting (None among strings)
    for gap in (np.nan, None):
        holed = y.astype(object if gap is None else float)
        holed[7] = gap
        with pytest.raises(BadInput, match="label of example 7 .* missing"):
            score(good, holed)


def test_nce_refuses_missing_source_labels():
    """Source labels given as an array with NaN scored every NaN as one source class ([0, 0, 1, 1,
    nan, nan] gave NCE 0.0, 'perfect'), and a None among strings raised a TypeError."""
    y = np.array([0, 0, 1, 1, 2, 2])
    with pytest.raises(BadInput, match="source label of example 4 .* missing"):
        nce(np.array([0, 0, 1, 1, np.nan, np.nan]), y)
    with pytest.raises(BadInput, match="source label of example 3 .* missing"):
        nce(np.array(["a", "a", "b", None, "c", "c"], dtype=object), y)
    with pytest.raises(BadInput, match="got 3 source labels for 6 labels"):
        nce(np.array([0, 1, 2]), y)
    assert nce(np.array(["a", "a", "b", "b", "c", "c"], dtype=object), y) == 0.0


def test_rank_orders_real_labels_above_shuffled_ones(clinc_small):
    """minilm on real CLINC intents against the same texts with their labels shuffled: every
    score must prefer the real task."""
    from quickadapt.data import load_dataset

    data = load_dataset(clinc_small["train"])
    shuffled = data.subset(range(len(data)))
    shuffled.labels = np.random.default_rng(0).permutation(data.labels)
    real = rank(data, "minilm", scores=["logme", "hscore", "leep"])["candidates"][0]  # one name: one candidate
    noise = rank(shuffled, ["minilm"], scores=["logme", "hscore", "leep"])["candidates"][0]
    for name in ("logme", "hscore", "leep"):
        assert real["scores"][name] > noise["scores"][name], name
    assert real["leep_source"] == "gmm" and real["embed_dim"] == 1152
    assert rank(data, "minilm", scores="logme")["scores"] == ["logme"]


def test_rank_cli_table_and_json(clinc_small, tmp_path):
    """A classifier folder fit on the task gives LEEP and NCE from its head; the ranking follows
    the first score; --json is one object with every candidate."""
    model = tmp_path / "clf"
    fitted = run("fit", "--data", clinc_small["train"], "--encoder", "minilm", "--strategy", "probe", "--out", model,
                 "--cv", "0", "--quiet")
    assert fitted.exit_code == 0, fitted.stderr
    r = run("rank", "--data", clinc_small["train"], "--encoders", f"minilm,{model},minilm[layers=1]", "--json", "--quiet")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["primary"] == "logme" and out["n_examples"] == 36 and out["n_classes"] == 6
    rows = out["candidates"]
    assert [c["rank"] for c in rows] == [1, 2, 3]
    assert [c["scores"]["logme"] for c in rows] == sorted((c["scores"]["logme"] for c in rows), reverse=True)
    by = {(c["encoder"], json.dumps(c["settings"])): c for c in rows}
    head = by[(str(model), "{}")]
    assert head["leep_source"] == "head" and head["skipped"] == {}
    assert head["scores"]["nce"] == pytest.approx(0.0, abs=1e-9)  # it was fit on these very labels
    plain = by[("minilm", "{}")]
    assert plain["scores"]["nce"] is None and "source" in plain["skipped"]["nce"]
    assert by[("minilm", '{"layers": 1}')]["embed_dim"] == 384
    # the classifier embeds through the same frozen minilm: the feature scores agree
    assert head["scores"]["logme"] == pytest.approx(plain["scores"]["logme"], rel=1e-5)
    text = run("rank", "--data", clinc_small["train"], "--encoders", f"minilm[layers=1],{model}",
               "--scores", "hscore,logme", "--quiet")
    assert text.exit_code == 0, text.stderr
    lines = text.stdout.splitlines()
    assert "ranked by hscore" in lines[0] and lines[1].split()[:4] == ["rank", "encoder", "hscore", "logme"]
    assert lines[2].split()[0] == "1" and len(lines) == 4
    assert_bad_input(run("rank", "--data", clinc_small["train"], "--encoders", f"minilm,{model}[layers=1]"),
                     "stored model")


def test_rank_bad_input(clinc_small, tmp_path):
    data = clinc_small["train"]
    assert_bad_input(run("rank", "--data", data, "--encoders", "minlm"), "did you mean minilm")
    not_model = tmp_path / "notes"
    not_model.mkdir()
    (not_model / "a.txt").write_text("x")
    assert_bad_input(run("rank", "--data", data, "--encoders", not_model), "not a hugging face model folder")
    assert_bad_input(run("rank", "--data", data, "--encoders", "conv4"), "reads image but the data is text")
    one = tmp_path / "one.csv"
    one.write_text("text,label\nhello,a\nhi there,a\n")
    assert_bad_input(run("rank", "--data", one, "--encoders", "minilm"), "1 class")
    X = np.random.default_rng(0).normal(size=(10, 3))
    X[2, 0] = np.nan
    np.savez(tmp_path / "nan.npz", X=X, y=np.arange(10) % 2)
    assert_bad_input(run("rank", "--data", tmp_path / "nan.npz", "--encoders", "mlp"), "non-finite")
    assert_bad_input(run("rank", "--data", data, "--encoders", "minilm", "--scores", "logme,leap"), "did you mean leep")
    assert_bad_input(run("rank", "--data", data, "--encoders", "minilm[layers"), "NAME[key=value")
    r = run("rank", "--data", data, "--encoders", "minilm[layers=0]", "--json")
    assert_bad_input(r, "layers")
    assert "--set" not in r.stderr and "--encoders minilm[KEY=VALUE]" in r.stderr  # rank's way to give a setting, not fit's
    assert json.loads(r.stdout)["error"]


def test_rank_scores_each_repeated_example_once(tmp_path):
    """A copy (same input, same label) adds no evidence: doubled examples score as the examples
    once (doubling inflated LogME from 0.35 to 7.30 on 30 CLINC texts)."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 5)
    X = rng.normal(size=(4, 6))[y] + rng.normal(size=(20, 6))
    np.savez(tmp_path / "once.npz", X=X, y=y)
    np.savez(tmp_path / "twice.npz", X=np.vstack([X, X]), y=np.concatenate([y, y]))
    once, twice = (rank(str(tmp_path / f"{n}.npz"), "mlp", scores=["logme", "hscore", "leep"]) for n in ("once", "twice"))
    assert twice["n_examples"] == once["n_examples"] == 20
    for name in ("logme", "hscore", "leep"):
        assert twice["candidates"][0]["scores"][name] == pytest.approx(once["candidates"][0]["scores"][name]), name


def test_rank_takes_a_folder_whose_path_has_commas_or_brackets_whole(tmp_path):
    """A model folder named models/bert,v2 was split at its comma ('encoder folder .../bert does not
    exist') and runs/[exp1] read as settings ('is not NAME or NAME[key=value;...]'); each names an
    existing folder, so it is taken whole, given alone or as a part, and --encoders adds up."""
    import shutil

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 8)
    np.savez(tmp_path / "f.npz", X=rng.normal(size=(3, 5))[y] * 2 + rng.normal(size=(24, 5)), y=y)
    fitted = run("fit", "--data", tmp_path / "f.npz", "--encoder", "mlp", "--out", tmp_path / "m", "--cv", "0", "--quiet")
    assert fitted.exit_code == 0, fitted.stderr
    comma, brackets = tmp_path / "bert,v2", tmp_path / "[exp1]"
    shutil.copytree(tmp_path / "m", comma)
    shutil.copytree(tmp_path / "m", brackets)
    r = run("rank", "--data", tmp_path / "f.npz", "--encoders", comma, "--encoders", f"mlp,{brackets},mlp[hidden=8]",
            "--json", "--quiet")
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)["candidates"]
    assert sorted((c["encoder"], json.dumps(c["settings"])) for c in rows) == sorted(
        [(str(comma), "{}"), (str(brackets), "{}"), ("mlp", "{}"), ("mlp", '{"hidden": 8}')])
    assert {c["leep_source"] for c in rows if c["encoder"] in (str(comma), str(brackets))} == {"head"}
    # a part that names no folder is read as before
    assert_bad_input(run("rank", "--data", tmp_path / "f.npz", "--encoders", f"{tmp_path}/[exp2]"), "NAME[key=value")


def test_scores_of_features_the_same_for_every_example_are_defined():
    """All-zero features made LogME's updates divide 0 by 0 (NaN, which rank's --json wrote as NaN and
    sorted anywhere); with F m = 0 for every w, the evidence is the labels' as noise, beta = n / |y|^2.
    N-LEEP's mixture warned (PCA's zero variance, one distinct cluster) and gave minus the labels' entropy."""
    import warnings

    y = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2])
    expected = np.mean([0.5 * np.log(15 / k) - 0.5 - 0.5 * np.log(2 * np.pi) for k in (4, 2, 9)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert logme(np.zeros((15, 4)), y) == pytest.approx(expected)
        assert logme(np.zeros((15, 4)), y) < logme(np.full((15, 4), 3.0), y)  # a constant fits the labels' mean
        entropy = -sum(k / 15 * np.log(k / 15) for k in (4, 2, 9))
        for constant in (np.zeros((15, 4)), np.full((15, 4), 3.0)):
            assert nleep(constant, y) == pytest.approx(-entropy)
            assert hscore(constant, y) == pytest.approx(0.0)
