"""Prediction over many inputs: embedded and scored a chunk at a time under one progress bar,
with the same answers as all at once; abstaining compares the score as it is written."""
import numpy as np
import pytest
from sklearn.datasets import load_digits

import quickadapt.model as model_module
from quickadapt.adapt import adapt
from quickadapt.data import Dataset
from quickadapt.errors import BadInput
from quickadapt.model import BlendedModel, shown_score
from quickadapt.progress import progress_bar


@pytest.fixture(scope="module")
def digits_model():
    x, y = load_digits(return_X_y=True)
    data = Dataset("features", x[:300].astype(np.float32), y[:300].astype(str).astype(object))
    return adapt(data, encoder="mlp", strategy="probe", cv=0, progress=False), x[300:].astype(np.float32)


def test_chunked_answers_equal_one_pass(digits_model, monkeypatch):
    model, test = digits_model
    whole = model.predict_proba(test)
    labels, scores = model.predict(test)
    monkeypatch.setattr(model_module, "PREDICT_CHUNK", 7)  # 1,497 rows in 214 chunks, the last of six
    assert np.allclose(model.predict_proba(test), whole, atol=1e-6)
    chunked_labels, chunked_scores = model.predict(test)
    assert chunked_labels == labels and np.allclose(chunked_scores, scores, atol=1e-6)
    blend = BlendedModel([model, model], [0.5, 0.5], strategy="blend")  # a geometric mean of a model with itself
    assert np.allclose(blend.predict_proba(test), whole, atol=1e-5)
    assert len(model.predict(test[:0])[0]) == 0 and model.predict_proba(test[:0]).shape == (0, 10)


def test_a_non_finite_score_names_its_row_across_chunks(digits_model, monkeypatch):
    model, test = digits_model
    monkeypatch.setattr(model_module, "PREDICT_CHUNK", 4)
    rows = test[:10].copy()
    rows[9, 0] = np.nan  # in the third chunk
    with pytest.raises(BadInput, match="input 10 are not finite"):
        model.predict(rows)


def test_one_bar_counts_every_row_once_cached_or_repeated(monkeypatch, tmp_path):
    """minilm's features come from the cache the second time: the bar still reaches the total."""
    monkeypatch.setenv("QUICKADAPT_CACHE", str(tmp_path))
    texts = ["check my balance", "book a flight", "what time is it", "play some jazz"] * 3
    data = Dataset("text", texts[:4], np.array(["bank", "travel", "time", "music"], dtype=object))
    model = adapt(data, encoder="minilm", strategy="prototypes", cv=0, progress=False)
    monkeypatch.setattr(model_module, "PREDICT_CHUNK", 5)
    seen = []

    def recording_bar(description, total):
        if callable(description):  # the outer bar's advance, passed on as progress_bar passes it
            yield description
            return
        seen.append(total)
        with progress_bar(None, total) as advance:  # silent, but counted
            def counting(n=1, description=None):
                seen.append(n)
                advance(n)
            yield counting

    import contextlib
    import shutil

    monkeypatch.setattr("quickadapt.progress.progress_bar", contextlib.contextmanager(recording_bar))
    shutil.rmtree(tmp_path / "embeddings")  # the fit cached the four texts: predict must embed them itself
    computed = []
    for _ in range(2):  # embedded (each text once), then served by the cache
        seen.clear()
        labels, _ = model.predict(texts, progress="predicting")
        computed.append(len(list((tmp_path / "embeddings").rglob("*.safetensors"))))
        assert labels == ["bank", "travel", "time", "music"] * 3
        assert seen[0] == len(texts) and sum(seen[1:]) == len(texts)
    assert computed == [1, 1]  # the first pass embedded and stored the four texts, the second only read them


def test_a_score_written_as_the_threshold_is_answered(digits_model):
    model, test = digits_model
    labels, scores = model.predict(test[:50])
    i = int(np.argsort(scores)[25])
    t = shown_score(scores[i])
    answered, _ = model.predict(test[:50], abstain=True, threshold=t)
    assert answered[i] == labels[i]
    kept = [lab != "__none__" for lab in answered]
    assert kept == [shown_score(s) >= t for s in scores]  # what a filter of the written file keeps


def test_a_feature_csv_id_column_names_its_rows_in_predictions(tmp_path):
    """The README promised an `id` kept to join the answers back; predict wrote the row positions
    0..n-1 and refused an id such as row0 as a feature that is not numeric."""
    import csv
    import json

    from cli_helpers import assert_bad_input, run

    rng = np.random.default_rng(0)
    y = np.repeat(["a", "b"], 10)
    X = rng.normal(size=(20, 2)) + 4 * (np.arange(20)[:, None] // 10 == np.arange(2)[None, :])

    def write(name, header, ids=None):
        with open(tmp_path / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows([*([ids[i]] if ids else []), f"{x[0]:.4f}", f"{x[1]:.4f}", lab] for i, (x, lab) in enumerate(zip(X, y)))
        return tmp_path / name

    train = write("train.csv", ["f0", "f1", "label"])
    assert run("fit", "--data", train, "--encoder", "mlp", "--cv", "0", "--out", tmp_path / "m", "--quiet").exit_code == 0
    plain = json.loads(run("predict", tmp_path / "m", "--data", train, "--json", "--quiet").stdout)["predictions"]
    assert [p["input"] for p in plain] == [str(i) for i in range(20)]  # no id column: the row's position
    for ids in ([f"{i + 1:03d}" for i in range(20)], [f"row{i}" for i in range(20)]):
        r = run("predict", tmp_path / "m", "--data", write("ids.csv", ["id", "f0", "f1", "label"], ids), "--json")
        assert r.exit_code == 0, r.stderr
        preds = json.loads(r.stdout)["predictions"]
        assert [p["input"] for p in preds] == ids  # as written: 001 stays 001
        assert [p["label"] for p in preds] == [p["label"] for p in plain]  # and the id is not read as a feature
    assert "column `id` is not numeric: it names the rows" in r.stderr
    # a model fit on a numeric id reads it as a feature: its rows keep their positions, and a
    # file whose id is text lacks that feature
    with_id = write("with_id.csv", ["id", "f0", "f1", "label"], [str(i + 1) for i in range(20)])
    assert run("fit", "--data", with_id, "--encoder", "mlp", "--cv", "0", "--out", tmp_path / "mi", "--quiet").exit_code == 0
    preds = json.loads(run("predict", tmp_path / "mi", "--data", with_id, "--json", "--quiet").stdout)["predictions"]
    assert [p["input"] for p in preds] == [str(i) for i in range(20)]
    assert_bad_input(run("predict", tmp_path / "mi", "--data", tmp_path / "ids.csv", "--quiet"),
                     "1 feature column of the data")
    # evaluate and fit still refuse a text id, as any feature that is not numeric
    assert_bad_input(run("evaluate", tmp_path / "m", "--data", tmp_path / "ids.csv"), "column `id` line 2 is not numeric")


def test_predictions_written_as_tsv_read_back_as_text_once_input_is_named_text(tmp_path):
    """predict --out x.tsv quotes a text holding a tab, which the loader refused as a quote that ran
    over rows; and its `input` column is the text a labelled file names `text`."""
    import csv
    import json

    from cli_helpers import assert_bad_input, run
    from quickadapt.artifact import save_model

    texts = ["what is my balance", "set an alarm\tfor 7am", 'say "hello" to her', "will it rain tomorrow"]
    data = Dataset("text", texts, np.array(["balance", "alarm", "message", "weather"], dtype=object))
    save_model(adapt(data, encoder="minilm", strategy="prototypes", cv=0, progress=False), tmp_path / "m")
    with open(tmp_path / "in.tsv", "w", newline="") as f:
        csv.writer(f, delimiter="\t", lineterminator="\n").writerows([["text"], *([t] for t in texts)])
    r = run("predict", tmp_path / "m", "--data", tmp_path / "in.tsv", "--out", tmp_path / "p.tsv", "--quiet")
    assert r.exit_code == 0, r.stderr
    written = (tmp_path / "p.tsv").read_text()
    assert written.startswith("input\tlabel\tscore\n") and '"set an alarm\tfor 7am"' in written
    assert_bad_input(run("evaluate", tmp_path / "m", "--data", tmp_path / "p.tsv"),
                     "predict writes its texts as `input`: rename that column `text`")
    (tmp_path / "q.tsv").write_text("text" + written[len("input"):])
    r = run("evaluate", tmp_path / "m", "--data", tmp_path / "q.tsv", "--json", "--quiet")
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["n"] == 4 and report["accuracy"] == 1.0  # its own answers, read back row for row


def test_cells_a_spreadsheet_reads_as_formulas_are_written_as_they_are_with_a_note(tmp_path):
    """A text or label beginning with =, +, - or @ is a formula to Excel and Sheets (OWASP's CSV
    injection): it is written unchanged, so `input` still matches the source and the file reads
    back as the same texts, and a note says which cells a spreadsheet would run; -1.5 is a number,
    and .jsonl is no spreadsheet's."""
    import csv

    from cli_helpers import run
    from quickadapt.artifact import save_model

    texts = ['=HYPERLINK("http://x.test","see")', "@SUM(1+1)", "-1.5", "what is my balance", "+33 call me"]
    data = Dataset("text", texts, np.array(["-x", "-x", "ok", "ok", "ok"], dtype=object))
    save_model(adapt(data, encoder="minilm", strategy="prototypes", cv=0, progress=False), tmp_path / "m")
    with open(tmp_path / "in.csv", "w", newline="") as f:
        csv.writer(f).writerows([["text"], *([t] for t in texts)])
    r = run("predict", tmp_path / "m", "--data", tmp_path / "in.csv", "--out", tmp_path / "p.csv")
    assert r.exit_code == 0, r.stderr
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["input"] for row in rows] == texts
    flagged = 3 + sum(row["label"] == "-x" for row in rows)  # the three texts and each answer -x
    assert (f"note: {flagged} cells written begin with =, +, - or @ (the first: "
            """'=HYPERLINK("http://x.test","see")'), which a spreadsheet opening the csv reads as a formula""") in r.stderr
    r = run("predict", tmp_path / "m", "--data", tmp_path / "in.csv", "--out", tmp_path / "p.jsonl")
    assert r.exit_code == 0 and "formula" not in r.stderr


def test_answers_withheld_for_classes_the_threshold_never_saw_are_noted(tmp_path):
    """A class with one example is never held out, so the calibrated threshold never saw its
    (lower) confidences: with 3 digits of one example beside 7 of 20, predict --abstain withheld
    most of their answers and said nothing about it. Now a note counts them and names the way out."""
    from cli_helpers import run
    from quickadapt.artifact import load_model

    x, y = load_digits(return_X_y=True)
    keep = np.concatenate([np.flatnonzero(y == d)[:20 if d < 7 else 1] for d in range(10)])
    np.savez(tmp_path / "train.npz", X=x[keep], y=y[keep])
    test = np.flatnonzero(np.isin(y, [7, 8, 9]))[1:]  # unseen rows of the classes with one example
    np.savez(tmp_path / "test.npz", X=x[test])
    r = run("fit", "--data", tmp_path / "train.npz", "--encoder", "mlp", "--out", tmp_path / "m", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert load_model(tmp_path / "m").info["uncalibrated_classes"] == ["7", "8", "9"]
    r = run("predict", tmp_path / "m", "--data", tmp_path / "test.npz", "--abstain", "--out", tmp_path / "p.csv")
    assert r.exit_code == 0, r.stderr
    withheld = sum(line.split(",")[1] == "__none__" for line in (tmp_path / "p.csv").read_text().splitlines()[1:])
    assert withheld > len(test) / 2  # most of their answers, not a few
    note = [line for line in r.stderr.splitlines() if "answers withheld" in line]
    assert len(note) == 1 and f"of the {withheld} answers withheld would have been one of the 3 classes" in note[0]
    assert "with one training example" in note[0] and "--threshold" in note[0]
    # a threshold of one's own is not the calibrated one: nothing to say
    r = run("predict", tmp_path / "m", "--data", tmp_path / "test.npz", "--threshold", "0.9")
    assert r.exit_code == 0 and "answers withheld" not in r.stderr


def test_top_classes_are_the_likeliest_with_the_answer_first(digits_model, monkeypatch):
    model, test = digits_model
    proba = model.predict_proba(test)
    labels, scores = model.predict(test)
    ranked = model.predict_top(test, 3)
    assert ranked.labels == labels and np.array_equal(ranked.scores, scores)
    assert ranked.top_labels[:, 0].tolist() == labels and ranked.top_labels.shape == (len(test), 3)
    columns = [[model.classes["main"].index(lab) for lab in row] for row in ranked.top_labels]
    assert np.array_equal(ranked.top_scores, np.take_along_axis(proba, np.array(columns), axis=1))
    assert np.array_equal(ranked.top_scores, -np.sort(-proba, axis=1)[:, :3])  # descending, none skipped
    # abstaining answers the none-label and still ranks the classes it withheld (before
    # the chunks change: another batch size may round a probability's last digit otherwise)
    withheld = model.predict_top(test, 2, abstain=True, threshold=0.9, none_label="unsure")
    unsure = [i for i, lab in enumerate(withheld.labels) if lab == "unsure"]
    assert unsure and all(withheld.top_labels[i, 0] == labels[i] for i in unsure)
    assert np.array_equal(withheld.top_scores, ranked.top_scores[:, :2])
    monkeypatch.setattr(model_module, "PREDICT_CHUNK", 7)  # across chunks, and through a blend's probabilities
    blend = BlendedModel([model, model], [0.5, 0.5], strategy="blend")
    assert blend.predict_top(test, 3).top_labels.tolist() == ranked.top_labels.tolist()
    assert model.predict_top(test, 40).top_labels.shape == (len(test), 10)  # a top 40 of 10 classes: all 10
    for k in (0, -1, 2.5, True, "3"):
        with pytest.raises(BadInput, match="k is how many classes to list: a whole number from 1"):
            model.predict_top(test[:2], k)
    # ties: predict (k = 1, argmax) and --top K (a sort) name the same first class, the first column
    tied = np.array([[0.2, 0.4, 0.4], [0.5, 0.5, 0.0], [0.1, 0.1, 0.8]])
    assert model_module.top_columns(tied, 1)[:, 0].tolist() == model_module.top_columns(tied, 3)[:, 0].tolist() == [1, 0, 2]
    # a few of many classes are picked, not every row sorted, and come out as a stable sort's, ties included
    many = np.random.default_rng(0).integers(0, 4, size=(50, 30)).astype(np.float32)
    for k in (2, 5, 29, 30):
        assert np.array_equal(model_module.top_columns(many, k), np.argsort(-many, axis=1, kind="stable")[:, :k])


def test_predict_top_on_each_head_of_a_multitask_model(tmp_path):
    from cli_helpers import assert_top_ranks_the_model_s_probabilities, run

    x, y = load_digits(return_X_y=True)
    header = ",".join(f"f{i}" for i in range(64))
    for name, rows, labels in (("main", x[:100], y[:100].astype(str)),
                               ("source", x[100:200], ["even" if v % 2 == 0 else "odd" for v in y[100:200]]),
                               ("test", x[200:230], None)):
        (tmp_path / f"{name}.csv").write_text(header + ("" if labels is None else ",label") + "\n" + "".join(
            ",".join(map(str, r.astype(int))) + ("" if labels is None else f",{lab}") + "\n"
            for r, lab in zip(rows, labels if labels is not None else rows)))
    r = run("fit", "--data", tmp_path / "main.csv", "--source", tmp_path / "source.csv", "--encoder", "mlp",
            "--strategy", "multitask", "--set", "epochs=2", "--cv", 0, "--out", tmp_path / "m", "--quiet")
    assert r.exit_code == 0, r.stderr
    main = assert_top_ranks_the_model_s_probabilities(tmp_path / "m", tmp_path / "test.csv", 4)
    source = assert_top_ranks_the_model_s_probabilities(tmp_path / "m", tmp_path / "test.csv", 4, task="source")
    assert {len(row["top"]) for row in main} == {4} and {len(row["top"]) for row in source} == {2}
    assert {t["label"] for row in source for t in row["top"]} == {"even", "odd"}
