"""`quickadapt domain-adapt` end to end on real shifted features (Office-Caltech dslr -> webcam):
the artifact works with predict and evaluate; bad input exits 2 with one line."""
import json

import numpy as np
import pytest

from domain_data import surf
from cli_helpers import assert_bad_input, assert_top_ranks_the_model_s_probabilities, run

FAST = ["--set", "steps=120", "--quiet"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("surf")
    d, w = surf("D"), surf("W")
    paths = {
        "source": folder / "dslr.npz", "target": folder / "webcam_unlabelled.npz",
        "target_labelled": folder / "webcam.npz",
    }
    np.savez(paths["source"], X=d.inputs, y=d.labels.astype(str))
    np.savez(paths["target"], X=w.inputs)
    np.savez(paths["target_labelled"], X=w.inputs, y=w.labels.astype(str))
    np.savez(folder / "narrow.npz", X=w.inputs[:, :100])
    np.savez(folder / "empty.npz", X=np.zeros((0, 800), dtype=np.float32))
    np.savez(folder / "single.npz", X=w.inputs[:1])
    keep = w.labels != "1"
    np.savez(folder / "extra_label.npz", X=w.inputs[keep][:20], y=np.where(np.arange(20) == 0, "zebra", w.labels[keep][:20]).astype(str))
    paths["folder"] = folder
    return paths


@pytest.fixture(scope="module")
def adapted(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("m") / "model"
    r = run("domain-adapt", "--source", files["source"], "--target", files["target"], "--method", "dann",
            "--target-test", files["target_labelled"], "--out", out, "--json", *FAST)
    assert r.exit_code == 0, r.stderr
    return out, json.loads(r.stdout)


def test_domain_adapt_reports_method_beside_source_only(adapted):
    out, result = adapted
    assert result["method"] == "dann" and result["encoder"] == "mlp"
    assert set(result["methods"]) == {"dann", "source-only"}
    for entry in result["methods"].values():
        assert {"dev_risk", "iwv_risk", "snd", "target_entropy", "criterion", "target_test_accuracy"} <= set(entry)
        assert entry["target_test_accuracy"] > 0.5  # 10 classes: chance is 10%
    assert isinstance(result["negative_transfer"], bool)
    versus = result["target_test_vs_source_only"]  # held-out fits compared on the same target test rows
    assert versus["accuracy"] == result["methods"]["dann"]["target_test_accuracy"]
    assert versus["source_only_accuracy"] == result["methods"]["source-only"]["target_test_accuracy"]
    assert versus["verdict"] in ("better", "worse", "within noise")
    assert not any("answers most target inputs" in w for w in result["warnings"])  # dslr -> webcam adapts well
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["strategy"]["name"] == "domain:dann" and manifest["encoder"]["weights"] == "stored"
    assert manifest["tasks"]["main"]["head"]["kind"] == "bottleneck"


def test_the_summary_says_what_the_target_test_says_beside_the_label_free_estimate(adapted):
    from quickadapt.evaluate.summary import domain_summary as _domain_summary

    _, result = adapted
    versus = result["target_test_vs_source_only"]
    last = _domain_summary(result).splitlines()[-1]
    assert last.startswith(f"on the target test, fitted on the same held-out split: dann {versus['accuracy']:.1%}, "
                           f"source-only {versus['source_only_accuracy']:.1%}")
    worse = {**result, "target_test_vs_source_only": {**versus, "verdict": "worse", "p_worse": 0.01}}
    assert _domain_summary(worse).splitlines()[-1].endswith("adaptation did WORSE than source-only (McNemar p = 0.010)")


def test_the_label_free_verdict_says_how_many_standard_errors_it_rests_on(adapted):
    """"adaptation looks better" was said for a lead within the estimate's noise (A->W, one seed:
    -0.2 to +1.2 standard errors of the paired per-example difference) as for a clear one."""
    from scipy.stats import ttest_rel

    from quickadapt.evaluate.summary import domain_summary as _domain_summary
    from quickadapt.domain.adapt import paired_lead_se

    _, result = adapted
    lead = result["methods"]["source-only"]["criterion"] - result["methods"]["dann"]["criterion"]
    t = result["criterion_lead_se"]  # the paired t statistic of the same held-out source examples
    assert t is not None and np.sign(t) == np.sign(lead)
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 0.3, 50), rng.normal(0.9, 0.3, 50)
    assert paired_lead_se(a, b) == pytest.approx(ttest_rel(a, b).statistic, abs=0.005)
    assert paired_lead_se(a, a) is None  # no spread: no verdict on its noise
    verdict = [line for line in _domain_summary(result).splitlines() if "by the label-free estimate" in line]
    assert len(verdict) == 1 and f"({abs(t):.1f} standard errors" in verdict[0]
    for shown, noise in ((0.7, True), (3.4, False)):
        line = _domain_summary({**result, "negative_transfer": False, "criterion_lead_se": shown}).splitlines()
        line = next(x for x in line if "looks better" in x)
        assert line.endswith(f"({shown} standard errors: within its noise)" if noise else f"({shown} standard errors)")
    # a collapsed candidate is worse whatever its risk: no figure that would seem to say otherwise
    collapsed = _domain_summary({**result, "negative_transfer": True, "criterion_lead_se": 3.4})
    assert "looks WORSE than source-only by the label-free estimate\n" in collapsed + "\n"


def test_artifact_works_with_predict_and_evaluate(adapted, files, tmp_path):
    out, result = adapted
    r = run("evaluate", out, "--data", files["target_labelled"], "--json", "--quiet")
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["n"] == 295
    assert report["accuracy"] == pytest.approx(result["target_test_accuracy"])  # the saved (refitted) model's
    preds = tmp_path / "p.csv"
    r = run("predict", out, "--data", files["target"], "--out", preds, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert len(preds.read_text().splitlines()) == 296
    assert_top_ranks_the_model_s_probabilities(out, files["target"], 3)
    r = run("evaluate", out, "--data", files["target_labelled"], "--top", 3, "--json", "--quiet")
    assert r.exit_code == 0 and 1 >= json.loads(r.stdout)["top_k_accuracy"] > report["accuracy"]
    assert_bad_input(run("evaluate", out, "--data", files["target_labelled"], "--abstain"),
                     "domain-adapt has no target labels to do it); pass --threshold")


def test_auto_keeps_the_candidate_the_validator_prefers(files, tmp_path):
    r = run("domain-adapt", "--source", files["source"], "--target", files["target"], "--method", "auto",
            "--out", tmp_path / "auto", "--json", *FAST)
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout)
    scores = {name: m["criterion"] for name, m in result["methods"].items()}
    assert "source-only" in scores and len(scores) >= 3
    assert result["method"] == min(scores, key=scores.get)
    assert result["negative_transfer"] == (result["method"] == "source-only")


def test_a_kept_model_answering_the_target_with_one_class_is_warned_about(tmp_path):
    """source-only kept at chance, every target answer in one class: warned on stderr once and
    listed in the --json report's warnings."""
    from domain_data import faded_onto_a_one

    source, target = faded_onto_a_one()
    np.savez(tmp_path / "s.npz", X=source.inputs, y=source.labels.astype(str))
    np.savez(tmp_path / "t.npz", X=target.inputs)
    r = run("domain-adapt", "--source", tmp_path / "s.npz", "--target", tmp_path / "t.npz", "--method", "source-only",
            "--out", tmp_path / "m", "--set", "steps=200", "--json")
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout)
    few = [w for w in result["warnings"] if "answers most target inputs with few classes" in w]
    assert len(few) == 1 and result["method"] == "source-only"
    assert r.stderr.count(f"warning: {few[0]}") == 1


def test_labelled_target_warns_and_goes_on(files, tmp_path):
    r = run("domain-adapt", "--source", files["source"], "--target", files["target_labelled"], "--method", "source-only",
            "--out", tmp_path / "m", *FAST)
    assert r.exit_code == 0, r.stderr
    assert "labels; they are ignored" in r.stderr


def test_a_target_that_is_the_source_is_warned_about(files, tmp_path):
    """The source given again as the target (a user's slip) was adapted to without a word, and the
    label-free estimate called adaptation better; a target of other inputs says nothing of it."""
    r = run("domain-adapt", "--source", files["source"], "--target", files["source"], "--method", "source-only",
            "--out", tmp_path / "m", *FAST)
    assert r.exit_code == 0, r.stderr
    assert "every target input is also a source input: there is little or no shift to adapt to; --target" in r.stderr
    d, w = surf("D"), surf("W")
    half = tmp_path / "half.npz"  # 100 of the source's 157 inputs beside 60 webcam ones
    np.savez(half, X=np.concatenate([d.inputs[:100], w.inputs[:60]]))
    r = run("domain-adapt", "--source", files["source"], "--target", half, "--method", "source-only",
            "--out", tmp_path / "m2", *FAST)
    assert r.exit_code == 0, r.stderr
    assert "100 of the 160 target inputs are also source inputs: there is little" in r.stderr
    r = run("domain-adapt", "--source", files["source"], "--target", files["target"], "--method", "source-only",
            "--out", tmp_path / "m3", *FAST)
    assert r.exit_code == 0, r.stderr
    assert "also a source input" not in r.stderr and "also source inputs" not in r.stderr


def test_a_target_with_some_labels_missing_is_read_without_them(files, tmp_path):
    """Target labels are never used: one blank among them was refused as if they mattered."""
    w = surf("W")
    rows = [",".join(f"{v:.5f}" for v in x) + "," + ("" if i == 3 else str(y)) for i, (x, y) in enumerate(zip(w.inputs[:30], w.labels))]
    target = tmp_path / "target.csv"
    target.write_text(",".join(f"f{j}" for j in range(w.inputs.shape[1])) + ",label\n" + "\n".join(rows) + "\n")
    source = tmp_path / "source.csv"
    d = surf("D")
    source.write_text(",".join(f"f{j}" for j in range(d.inputs.shape[1])) + ",label\n"
                      + "".join(",".join(f"{v:.5f}" for v in x) + f",{y}\n" for x, y in zip(d.inputs, d.labels)))
    r = run("domain-adapt", "--source", source, "--target", target, "--method", "source-only", "--out", tmp_path / "m", *FAST)
    assert r.exit_code == 0, r.stderr
    assert "has labels, some missing; they are ignored" in r.stderr
    # only a missing label is forgiven: an image folder with an empty class folder is still refused
    from PIL import Image

    for folder in ("src", "tgt"):
        for name in ("a", "b"):
            (tmp_path / folder / name).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((8, 8), 60 * i, np.uint8)).save(tmp_path / folder / name / f"{i}.png")
    (tmp_path / "tgt" / "empty").mkdir()
    assert_bad_input(run("domain-adapt", "--source", tmp_path / "src", "--target", tmp_path / "tgt", "--out",
                         tmp_path / "m2", *FAST), "class folder 'empty' has no images")


def test_bad_inputs_exit_2_with_one_line(files, tmp_path):
    f = files["folder"]
    common = ["--out", tmp_path / "x", *FAST]
    assert_bad_input(run("domain-adapt", "--source", files["source"], "--target", f / "narrow.npz", *common), "800 features")
    assert_bad_input(run("domain-adapt", "--source", files["source"], "--target", f / "empty.npz", *common), "no examples")
    assert_bad_input(run("domain-adapt", "--source", files["source"], "--target", f / "single.npz", *common), "at least 2")
    assert_bad_input(run("domain-adapt", "--source", files["source"], "--target", files["target"],
                         "--target-test", f / "extra_label.npz", *common), "zebra")
    assert_bad_input(run("domain-adapt", "--source", files["source"], "--target", files["target"],
                         "--method", "danm", *common), "did you mean dann")
    assert_bad_input(run("domain-adapt", "--source", files["source"], "--target", files["target"],
                         "--set", "trade_off=-1", *common), "trade_off")
    assert_bad_input(run("domain-adapt", "--source", files["target"], "--target", files["target"], *common), "no labels")
    assert not (tmp_path / "x").exists()
    (tmp_path / "exists").mkdir()
    assert_bad_input(run("domain-adapt", "--source", files["source"], "--target", files["target"],
                         "--out", tmp_path / "exists", "--quiet"), "already exists")


def test_meda_notes_settings_it_cannot_use(files, tmp_path):
    r = run("domain-adapt", "--source", files["source"], "--target", files["target"], "--method", "meda",
            "--set", "dim=500", "--set", "steps=5", "--out", tmp_path / "m", "--json")
    assert r.exit_code == 0, r.stderr
    # 800 SURF features but about 120 source examples to solve with: the subspace is capped by them
    assert "note: meda dim 500 is more than these data allow; used " in r.stderr
    assert "note: meda trains no features on feature vectors: steps not used" in r.stderr
    assert "encoder and its settings are not used" not in r.stderr  # the default mlp: nothing was chosen
    assert json.loads(r.stdout)["method"] == "meda" and json.loads(r.stdout)["features"] == "the raw values"
    r = run("domain-adapt", "--source", files["source"], "--target", files["target"], "--method", "meda",
            "--set", "encoder.depth=3", "--out", tmp_path / "m3")
    assert r.exit_code == 0 and "note: meda reads the raw feature values: the encoder and its settings are not used" in r.stderr
    r = run("domain-adapt", "--source", files["source"], "--target", files["target"], "--method", "meda",
            "--out", tmp_path / "m2", "--quiet")
    assert r.exit_code == 0 and "adapted with meda (the raw values)" in r.stdout, r.stdout


def test_the_python_api_reads_paths_as_the_cli_does(files):
    from quickadapt.domain import adapt_domain
    from quickadapt.errors import BadInput

    model = adapt_domain(str(files["source"]), files["target_labelled"], "coral", target_test=files["target_labelled"],
                         compare=False, progress=False)
    assert any("labels; they are ignored" in w for w in model.info["warnings"])
    assert model.info["target_test_accuracy"] > 0.5  # chance is 10%
    with pytest.raises(BadInput, match="a Dataset or a path"):
        adapt_domain([[0.0, 1.0]], files["target"], "coral")
    with pytest.raises(BadInput, match="^seed must be a whole number >= 0, got -1"):
        adapt_domain(files["source"], files["target"], "coral", seed=-1)
    with pytest.raises(BadInput, match="^unknown domain adaptation method 'bogus': choose auto or one of cdan"):
        adapt_domain(files["source"], files["target"], "bogus")
    with pytest.raises(BadInput, match="^candidates must be a list of method names"):
        adapt_domain(files["source"], files["target"], "auto", candidates="mcc")


def test_target_columns_are_matched_to_the_source_s_by_name(tmp_path):
    from quickadapt.domain import adapt_domain
    from quickadapt.errors import BadInput

    d, w = surf("D"), surf("W")
    names = [f"f{j}" for j in range(40)]

    def write(name, data, order):
        rows = [",".join([*(f"{v:.5f}" for v in x[:40][order]), lab]) for x, lab in zip(data.inputs, data.labels)]
        (tmp_path / name).write_text(",".join([*np.asarray(names)[order], "label"]) + "\n" + "\n".join(rows) + "\n")
        return tmp_path / name

    source = write("source.csv", d, np.arange(40))
    accuracies = []
    for order in (np.arange(40), np.arange(40)[::-1]):
        target = write("target.csv", w, order)
        model = adapt_domain(source, target, "coral", target_test=target, compare=False, progress=False)
        accuracies.append(model.info["target_test_accuracy"])
    assert accuracies[0] == accuracies[1] > 0.3  # chance is 10%
    (tmp_path / "other.csv").write_text((tmp_path / "target.csv").read_text().replace("f0,", "g0,", 1))
    with pytest.raises(BadInput, match=r"feature column of the source missing: f0 \(and g0 not in it\)"):
        adapt_domain(source, tmp_path / "other.csv", "coral", compare=False, progress=False)


def test_python_and_command_line_adapt_with_the_same_default_method():
    import inspect

    import typer

    from quickadapt.cli import domain_adapt
    from quickadapt.domain import adapt_domain

    flag = inspect.signature(domain_adapt).parameters["method"].default
    assert isinstance(flag, typer.models.OptionInfo)
    assert inspect.signature(adapt_domain).parameters["method"].default == flag.default == "auto"


def test_meda_ensemble_through_the_cli(files, tmp_path):
    """--set ensemble=true on dslr -> webcam: one model averaging 9 kernel machines, saved and
    used by predict; lamb or dim beside it (which the ensemble sets itself) is refused."""
    out = tmp_path / "m"
    r = run("domain-adapt", "--source", files["source"], "--target", files["target"], "--method", "meda",
            "--set", "ensemble=true", "--target-test", files["target_labelled"], "--out", out, "--json")
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["method"] == "meda" and result["methods"]["meda"]["target_test_accuracy"] > 0.5  # chance 10 %
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["strategy"]["params"]["ensemble"] is True
    assert manifest["tasks"]["main"]["head"]["kind"] == "kernel-ensemble" and len(manifest["tasks"]["main"]["head"]["members"]) == 9
    r = run("predict", out, "--data", files["target"], "--out", tmp_path / "p.csv")
    assert r.exit_code == 0, r.stderr
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 1 + len(surf("W"))
    # the report lists the grid the members used, not the single lamb and dim the ensemble never read
    r = run("report", out, "--out", tmp_path / "report", "--quiet")
    assert r.exit_code == 0, r.stderr
    page = (tmp_path / "report" / "index.html").read_text()
    assert "dim=[10, 20, 30], lamb=[1.0, 10.0, 100.0]" in page and "ensemble=true" in page and "lamb=10.0" not in page
    for bad in ("lamb=5", "dim=30"):
        assert_bad_input(run("domain-adapt", "--source", files["source"], "--target", files["target"], "--method", "meda",
                             "--set", "ensemble=true", "--set", bad, "--out", tmp_path / "x"), f"{bad} would not be used")
    assert not (tmp_path / "x").exists()
