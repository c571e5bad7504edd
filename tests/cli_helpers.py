"""Running the CLI in-process and checking the bad-input contract, shared by the CLI tests."""
from typer.testing import CliRunner

from quickadapt.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_bad_input(result, fragment):
    """Exit code 2, exactly one line on stderr naming the problem, no traceback anywhere."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert fragment.lower() in lines[0].lower(), lines[0]


def assert_top_ranks_the_model_s_probabilities(model_dir, data, k, *extra, task="main", none_label="__none__"):
    """`predict --top K` beside predict: each row lists min(K, classes) classes, the first being the
    label predict answers (unless it abstained) with its score, their scores the model's own
    probabilities for them, rounded as written, descending, none left out above the last."""
    import json

    import numpy as np

    from quickadapt.artifact import load_model
    from quickadapt.data import load_dataset

    plain = run("predict", model_dir, "--data", data, "--json", "--quiet", "--task", task, *extra)
    ranked = run("predict", model_dir, "--data", data, "--top", k, "--json", "--quiet", "--task", task, *extra)
    assert plain.exit_code == 0 and ranked.exit_code == 0, plain.stderr + ranked.stderr
    plain, ranked = json.loads(plain.stdout)["predictions"], json.loads(ranked.stdout)["predictions"]
    model = load_model(model_dir)
    classes = model.classes[task]
    proba = model.predict_proba(load_dataset(data, labels="ignore").inputs, task=task)
    assert len(ranked) == len(plain) == len(proba) > 0
    for row, answer, p in zip(ranked, plain, proba):
        assert {key: row[key] for key in answer} == answer  # the row predict writes, unchanged
        top = row["top"]
        assert len(top) == min(k, len(classes)) and len({t["label"] for t in top}) == len(top)
        assert top[0]["score"] == answer["score"]
        assert answer["label"] in (top[0]["label"], none_label)  # an abstention still ranks the classes
        scores = [t["score"] for t in top]
        assert scores == sorted(scores, reverse=True)
        assert scores == [round(float(p[classes.index(t["label"])]), 6) for t in top]
        assert scores == [round(float(v), 6) for v in np.sort(p)[::-1][:len(top)]]  # the highest, none skipped
    return ranked
