"""`quickadapt report`: the page states the manifest's and evaluate's own figures, its plots exist
and open, user strings are escaped, and the folder appears whole or not at all."""
import base64
import csv
import errno
import html
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import assert_bad_input, run
from domain_data import rotated_digits

HOSTILE = '<script>alert("x")</script> & co'  # a label a page must show as text, never run


@pytest.fixture(scope="module")
def text_model(clinc_small, tmp_path_factory):
    """minilm probe on real CLINC150 (6 intents, 6 examples each), one intent renamed to HOSTILE."""
    folder = tmp_path_factory.mktemp("report")
    paths = {}
    for part in ("train", "test"):
        with open(clinc_small[part], newline="") as f:
            rows = [(r["text"], HOSTILE if r["label"] == "weather" else r["label"]) for r in csv.DictReader(f)]
        paths[part] = folder / f"{part}.csv"
        with open(paths[part], "w", newline="") as f:
            csv.writer(f).writerows([("text", "label"), *rows])
    model = folder / "model"
    r = run("fit", "--data", paths["train"], "--encoder", "minilm", "--baseline", "--out", model, "--quiet")
    assert r.exit_code == 0, r.stderr
    return model, paths


def _page_pngs(page: str, folder: Path) -> list[str]:
    """Every PNG the page names beside it; each embedded copy is the file's bytes."""
    embedded = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    linked = re.findall(r"<a href='([^']+\.png)'>", page)
    assert len(embedded) == len(linked)
    for name, data in zip(linked, embedded):
        assert (folder / name).read_bytes() == base64.b64decode(data)
        with Image.open(folder / name) as image:
            image.verify()
            assert image.format == "PNG"
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            assert image.size[0] > 100 and image.size[1] > 100
    return linked


def test_the_page_states_the_manifest_s_and_evaluate_s_own_figures(text_model, tmp_path):
    model, paths = text_model
    out = tmp_path / "report"
    r = run("report", model, "--data", paths["test"], "--abstain", "--out", out, "--json", "--quiet")
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout)
    ev = run("evaluate", model, "--data", paths["test"], "--abstain", "--json", "--quiet")
    assert ev.exit_code == 0, ev.stderr
    evaluated = json.loads(ev.stdout)
    manifest = json.loads((model / "manifest.json").read_text())
    page = (out / "index.html").read_text()

    # the fit's figures, the threshold and what the model is
    metrics = manifest["metrics"]
    assert f"{metrics['cv_accuracy']:.1%}" in page and f"{metrics['baseline']['cv_accuracy']:.1%}" in page
    assert f"{manifest['threshold']:.4f}" in page
    for fact in (manifest["data_fingerprint"], manifest["quickadapt_version"], manifest["created"], "minilm", "probe"):
        assert html.escape(str(fact)) in page
    # the verdict the command line printed at fit time, word for word
    assert "transfer helps" in page or "not clearly better than the baseline" in page or "NOT better" in page
    # evaluate's figures, from the same rows, with the abstentions
    test = result["test"]
    assert {k: test[k] for k in ("accuracy", "macro_f1", "n", "n_abstained")} == \
           {k: evaluated[k] for k in ("accuracy", "macro_f1", "n", "n_abstained")}
    assert evaluated["n_abstained"] > 0
    assert f"{evaluated['accuracy']:.1%}" in page and f"{evaluated['macro_f1']:.1%}" in page
    for label, m in evaluated["per_class"].items():
        row = "".join(f"<td>{html.escape(v)}</td>" for v in (label, f"{m['precision']:.1%}",
                                                               f"{m['recall']:.1%}", f"{m['f1']:.1%}"))
        assert row + f"<td>{m['support']}</td>" in page, label
    for c in evaluated["confusions"][:3]:
        assert f"<td>{html.escape(c['label'])}</td><td>{html.escape(c['predicted'])}</td><td>{c['count']}</td>" in page

    # the plots: written beside the page, the same bytes embedded, each a PNG that opens
    assert sorted(_page_pngs(page, out)) == ["confidence.png", "confusion.png"]
    assert sorted(Path(p).name for p in result["plots"]) == ["confidence.png", "confusion.png"]
    assert sorted(p.name for p in out.iterdir()) == ["confidence.png", "confusion.png", "index.html",
                                                     "quickadapt-report.json"]
    assert json.loads((out / "quickadapt-report.json").read_text()) == result
    # nothing fetched: no link, script or stylesheet from elsewhere
    assert not re.search(r"(src|href)=['\"]?(https?:|//)", page) and "<script" not in page


def test_report_on_the_training_examples_warns_in_json_and_on_the_terminal_too(text_model, tmp_path):
    """report --data on a model's own 50 training examples (10 CLINC150 banking intents) printed
    'accuracy 100.0%, macro F1 100.0% on 50 test rows' and --json gave the same with no word:
    evaluate's warning that these are the examples the model was fitted on was on the page alone."""
    model, paths = text_model
    r = run("report", model, "--data", paths["train"], "--out", tmp_path / "j", "--json", "--quiet")
    assert r.exit_code == 0, r.stderr
    ev = json.loads(run("evaluate", model, "--data", paths["train"], "--json", "--quiet").stdout)
    test = json.loads(r.stdout)["test"]
    assert test["warnings"] == ev["warnings"] and any("the model was fitted on" in w for w in test["warnings"])
    r = run("report", model, "--data", paths["train"], "--out", tmp_path / "t", "--quiet")
    assert r.exit_code == 0 and "\nwarning: these are the examples the model was fitted on" in r.stdout


@pytest.mark.parametrize("p, verdict", [(0.5, "0.05 or above: the lead is within the noise"),
                                        (0.01, "below 0.05: a real lead")])
def test_the_mcnemar_row_says_the_verdict_its_p_gives(p, verdict):
    from quickadapt.evaluate.report import _fit_section

    # p = 0.5 was shown beside "small: a real lead" while fit's own line said "within the noise"
    metrics = {"cv_accuracy": 1.0, "cv_folds": 3, "cv_scored": 48, "n_examples": 48, "n_classes": 6,
               "p_transfer_better": p, "baseline": {"name": "tfidf+logistic", "cv_accuracy": 0.979}}
    page = "".join(_fit_section({"metrics": metrics, "info": {}, "encoder": {"name": "minilm"},
                                 "strategy": {"name": "probe"}}, Path("m")))
    assert f"<td>{p:.3g}</td><td>{verdict}</td>" in page


def test_a_fit_without_cross_validation_says_so():
    from quickadapt.evaluate.report import _fit_section

    # fit --cv 0 showed "–" and "0 folds, – examples scored", as if something had been measured
    metrics = {"n_examples": 48, "n_classes": 6, "cv": 0, "threshold": None}
    page = "".join(_fit_section({"metrics": metrics, "info": {}, "encoder": {"name": "minilm"},
                                 "strategy": {"name": "probe"}}, Path("m")))
    assert "<td>cross-validated accuracy</td><td>none</td><td>the fit ran no cross-validation (--cv 0)</td>" in page
    assert "0 folds" not in page


def test_user_strings_are_escaped(text_model, tmp_path):
    model, paths = text_model
    out = tmp_path / "report"
    r = run("report", model, "--data", paths["test"], "--out", out, "--quiet")
    assert r.exit_code == 0, r.stderr
    page = (out / "index.html").read_text()
    assert HOSTILE not in page and "<script" not in page.lower()
    assert html.escape(HOSTILE) in page  # shown, as text


def test_an_existing_out_is_refused_without_force_and_replaced_with_it(text_model, tmp_path):
    model, _ = text_model
    out = tmp_path / "report"
    assert run("report", model, "--out", out, "--quiet").exit_code == 0
    before = (out / "index.html").read_text()
    assert_bad_input(run("report", model, "--out", out, "--quiet"), "already exists")
    assert (out / "index.html").read_text() == before
    r = run("report", model, "--out", out, "--force", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert "with --data TEST the page adds" in (out / "index.html").read_text()
    # a folder of the user's own files is never replaced, --force or not
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert_bad_input(run("report", model, "--out", mine, "--force", "--quiet"), "no quickadapt output")
    assert (mine / "notes.txt").read_text() == "mine"


def test_bad_input_is_one_line_and_leaves_nothing(text_model, tmp_path):
    model, paths = text_model
    out = tmp_path / "report"
    digits = tmp_path / "digits.npz"
    source, _ = rotated_digits(35.0)
    np.savez(digits, X=np.asarray(source.inputs)[:20], y=source.labels[:20].astype(str))
    assert_bad_input(run("report", tmp_path / "nothing", "--out", out, "--quiet"), "no such model folder")
    assert_bad_input(run("report", paths["test"].parent, "--out", out, "--quiet"), "not a quickadapt model")
    assert_bad_input(run("report", model, "--data", digits, "--out", out, "--quiet"),
                     "is features data but the model")
    assert_bad_input(run("report", model, "--data", tmp_path / "missing.csv", "--out", out, "--quiet"),
                     "no such file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits.npz"]  # no report, no temp folder


def test_a_write_that_fails_halfway_leaves_no_folder(text_model, tmp_path, monkeypatch):
    """The page is written first into a temp folder beside --out; a full disk at the next file
    removes it, and --out never appears."""
    import quickadapt.evaluate.report as report

    model, _ = text_model

    def disk_full(value):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report, "finite_json", disk_full)
    with pytest.raises(OSError):
        report.write_report(model, tmp_path / "report")
    assert list(tmp_path.iterdir()) == []


def test_a_domain_adapted_model_shows_source_only_against_adapted(tmp_path):
    source, target = rotated_digits(35.0)
    src, tgt = tmp_path / "src.npz", tmp_path / "tgt.npz"
    np.savez(src, X=np.asarray(source.inputs), y=source.labels.astype(str))
    np.savez(tgt, X=np.asarray(target.inputs), y=np.asarray(target.labels).astype(str))
    model = tmp_path / "da"
    r = run("domain-adapt", "--source", src, "--target", tgt, "--method", "coral", "--out", model,
            "--set", "steps=50", "--quiet", "--json")
    assert r.exit_code == 0, r.stderr
    adapted = json.loads(r.stdout)
    out = tmp_path / "report"
    r = run("report", model, "--data", tgt, "--out", out, "--json", "--quiet")
    assert r.exit_code == 0, r.stderr
    page = (out / "index.html").read_text()
    assert "source-only against adapted" in page
    for name, m in adapted["methods"].items():
        assert f"<td>{name}</td><td>{m['criterion']:.3f}</td><td>{m['source_val_accuracy']:.1%}</td>" in page
    verdict = "looks WORSE than source-only" if adapted["negative_transfer"] else "looks better than source-only"
    assert verdict in page
    assert json.loads(r.stdout)["test"]["n"] == len(target.labels)
    assert sorted(_page_pngs(page, out)) == ["confidence.png", "confusion.png"]
    # no calibrated threshold (no target labels): --abstain names the flag report takes instead
    assert_bad_input(run("report", model, "--data", tgt, "--abstain", "--out", tmp_path / "r2", "--quiet"),
                     "pass --threshold")
    r = run("report", model, "--data", tgt, "--threshold", 0.5, "--out", tmp_path / "r2", "--json", "--quiet")
    ev = run("evaluate", model, "--data", tgt, "--threshold", 0.5, "--json", "--quiet")
    assert r.exit_code == 0 and ev.exit_code == 0, r.stderr + ev.stderr
    assert json.loads(r.stdout)["test"]["n_abstained"] == json.loads(ev.stdout)["n_abstained"] > 0
    assert "top probability below 0.5000" in (tmp_path / "r2" / "index.html").read_text()


def test_a_meta_trained_encoder_shows_its_split_and_validation(tmp_path):
    model = tmp_path / "meta"
    r = run("meta-train", "--data", "builtin:clinc150-train", "--method", "protonet", "--ways", 3, "--shots", 1,
            "--queries", 1, "--steps", 2, "--meta-batch", 1, "--set", "validate_every=1", "--set",
            "validate_episodes=2", "--out", model, "--quiet")
    assert r.exit_code == 0, r.stderr
    meta = json.loads((model / "manifest.json").read_text())["meta"]
    out = tmp_path / "report"
    r = run("report", model, "--out", out, "--quiet")
    assert r.exit_code == 0, r.stderr
    page = (out / "index.html").read_text()
    assert "3-way 1-shot" in page and "protonet" in page
    for part in ("train", "val", "test"):
        groups = ", ".join(meta["class_split"]["groups"][part])
        assert f"<td>{part}</td><td>{len(meta['class_split'][part])}</td><td>{html.escape(groups)}</td>" in page
    assert f"kept step {meta['train']['validation']['best_step']}" in page
    assert _page_pngs(page, out) == ["validation.png"]
    # an encoder has no classes to score test data on
    assert_bad_input(run("report", model, "--data", "builtin:clinc150-test", "--out", tmp_path / "r2", "--quiet"),
                     "is an encoder folder")
    assert not (tmp_path / "r2").exists()


def test_many_classes_show_the_most_confused_in_the_matrix():
    from quickadapt.evaluate.plots import shown_classes

    classes = [f"c{i:03d}" for i in range(150)]
    confusions = [{"label": f"c{i:03d}", "predicted": f"c{i + 1:03d}", "count": 100 - i} for i in range(0, 60, 2)]
    shown = shown_classes(classes, confusions)
    assert len(shown) == 20 and shown == sorted(shown)
    assert shown[:4] == ["c000", "c001", "c002", "c003"] and "c040" not in shown
    assert shown_classes(classes[:12], confusions) == classes[:12]


def test_class_names_are_drawn_as_written_and_missing_glyphs_are_one_note(capsys):
    """`$...$` in a label is no formula (mathtext failed on `$\\nosuch$`: "Unknown symbol"), and a
    Chinese label set gave one UserWarning a character; now one note says the plot shows boxes."""
    import warnings

    from quickadapt.evaluate.plots import confusion_matrix_png

    classes = ["$5 fee", "$\\nosuch$ plan", "余额查询", "x" * 60]
    truth = np.array(classes * 3, dtype=object)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning left would fail here
        png = confusion_matrix_png(truth, np.roll(truth, 1), classes)
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "余额查询" in notes[0] and "boxes" in notes[0]


def test_the_confidence_histogram_stays_readable_under_a_dominant_top_bar():
    """A confident model put 445 of 600 digits in the 0.95-1.0 bar, and on a linear axis the bars
    below it (one row: 0.2 % of the axis) were a few pixels high; past 10 median bars the counts go
    on a log axis, the groups side by side, every bar's top clear of the axis, and the counts the same."""
    import matplotlib

    from quickadapt.evaluate.plots import _confidence_figure

    rng = np.random.default_rng(0)
    scores = np.concatenate([np.full(445, 0.99), rng.uniform(0.3, 0.95, 155)])
    right = np.concatenate([np.ones(445, bool), rng.random(155) < 0.7])

    def bars(fig):
        ax = fig.axes[0]
        drawn = [p for p in ax.patches if isinstance(p, matplotlib.patches.Rectangle) and p.get_height() > 0]
        tops = [ax.transAxes.inverted().transform(ax.transData.transform((p.get_x(), p.get_y() + p.get_height())))[1]
                for p in drawn]
        return ax, sum(p.get_height() for p in drawn), min(tops)

    with matplotlib.rc_context({"text.parse_math": False}):
        ax, rows, lowest = bars(_confidence_figure(scores, right, None, None))
        assert rows == pytest.approx(600) and lowest > 0.05
        assert ax.get_yscale() == "log" and "log scale" in ax.get_ylabel()
        # spread scores keep the linear, stacked histogram
        ax, rows, _ = bars(_confidence_figure(rng.uniform(0.3, 1.0, 300), rng.random(300) < 0.9, None, None))
        assert ax.get_yscale() == "linear" and rows == pytest.approx(300)
