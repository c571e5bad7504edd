"""The default fit on feature vectors (`quickadapt fit` with no options: the `mlp` encoder, frozen
at random, with a logistic probe) against the no-transfer baseline (standardised logistic
regression) on scikit-learn's wine, breast cancer and digits tables: K = 5 and 20 examples per
class, 3 seeds (each seed one K-subset shared by both), every row not drawn scored. Wine and
breast cancer mix scales (wine's proline near 1000 beside ratios near 0.1); digits' 64 pixels
share one.

    .venv/bin/python bench/tabular_defaults.py
    .venv/bin/python bench/tabular_defaults.py --report

Results: bench/results/tabular_defaults.jsonl (+ .md)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ResultStore, machine, per_seed, seed_rows, simple_main  # noqa: E402

DATASETS = ("wine", "breast_cancer", "digits")


def load(name: str):
    import numpy as np
    from sklearn import datasets

    from quickadapt.data import Dataset

    x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    return Dataset("features", np.asarray(x, dtype=np.float64), y.astype(str).astype(object), name=name)


def worker(spec: dict) -> dict:
    import numpy as np

    from quickadapt.adapt import adapt
    from quickadapt.evaluate.baseline import fit_baseline

    data = load(spec["dataset"])
    rng = np.random.default_rng(spec["seed"])
    drawn = sorted(i for c in data.classes
                   for i in rng.choice(np.flatnonzero(data.labels == c), size=spec["k"], replace=False).tolist())
    train, rest = data.subset(drawn), data.subset(np.setdiff1d(np.arange(len(data)), drawn))
    if spec["method"] == "default fit":
        model = adapt(train, seed=spec["seed"], cv=0, progress=False)
    else:
        model = fit_baseline(train, seed=spec["seed"])
    labels, _ = model.predict(rest.inputs)
    return {"accuracy": float(np.mean(np.asarray(labels, dtype=object) == rest.labels)), "n_scored": len(rest)}


def report(store: ResultStore) -> str:
    lines = ["| data | K | method | seeds | accuracy (mean) | per seed |", "|---|---|---|---|---|---|"]
    for (dataset, k, method), rows in seed_rows(store, ("dataset", "k", "method")):
        lines.append(f"| {dataset} | {k} | {method} | {len(rows)} | {per_seed(rows)} |")
    table = "\n".join(lines)
    (RESULTS / "tabular_defaults.md").write_text(
        "# Feature vectors: the default fit against the baseline (bench/tabular_defaults.py)\n\n"
        "Accuracy on every row not drawn. `default fit`: `quickadapt fit` with no options (mlp encoder, random and "
        "frozen, its inputs centred and, on mixed scales, divided by their spread; logistic probe). `baseline`: "
        "standardised logistic regression (`--baseline`). Machine: " + json.dumps(machine()) + "\n\n" + table + "\n")
    return table


if __name__ == "__main__":
    simple_main("tabular_defaults", __file__, worker, report=report,
                specs=[{"dataset": d, "k": k, "seed": seed, "method": m} for d in DATASETS
                       for k in (5, 20) for seed in (0, 1, 2) for m in ("default fit", "baseline")])
