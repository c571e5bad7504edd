"""`blend` against its base (`probe` on efficientnet-lite0) on image data unlike ImageNet beyond
Fashion-MNIST: scikit-learn's digits (8x8) and the first 40 Omniglot characters (by name).
K = 1, 5, 10 examples per class, 3 seeds (each seed one K-subset shared by both methods); every
image not drawn is scored.

    .venv/bin/python bench/image_blend_check.py
    .venv/bin/python bench/image_blend_check.py --report

Results: bench/results/image_blend_check.jsonl (+ .md)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ResultStore, machine, mean, peak_mb, per_seed, seed_rows, simple_main  # noqa: E402

DATASETS = {"digits": ("builtin:digits", None), "omniglot-40": ("builtin:omniglot", 40)}


def worker(spec: dict) -> dict:
    import time

    import numpy as np

    from quickadapt.adapt import adapt
    from quickadapt.data import load_dataset

    name, n_classes = DATASETS[spec["dataset"]]
    data = load_dataset(name)
    if n_classes:
        data = data.subset(np.flatnonzero(np.isin(data.labels, data.classes[:n_classes])))
    rng = np.random.default_rng(spec["seed"])
    drawn = sorted(i for c in data.classes
                   for i in rng.choice(np.flatnonzero(data.labels == c), size=spec["k"], replace=False).tolist())
    rest = data.subset(np.setdiff1d(np.arange(len(data)), drawn))
    started = time.perf_counter()
    model = adapt(data.subset(drawn), encoder="efficientnet-lite0", strategy=spec["method"], seed=spec["seed"],
                  cv=0, progress=False)
    fit_seconds = time.perf_counter() - started
    labels, _ = model.predict(rest.inputs)
    return {"accuracy": float(np.mean(np.asarray(labels, dtype=object) == rest.labels)),
            "fit_seconds": round(fit_seconds, 2), "peak_mb": peak_mb(), "blend": model.info.get("blend")}


def report(store: ResultStore) -> str:
    lines = ["| data | K | method | seeds | accuracy (mean) | per seed | blend weights | fit s |", "|---|---|---|---|---|---|---|---|"]
    for (dataset, k, method), rows in seed_rows(store, ("dataset", "k", "method")):
        weights = ", ".join(f"{r['blend']['weight']:g}" for r in rows) if method == "blend" else ""
        lines.append(f"| {dataset} | {k} | {method} | {len(rows)} | {per_seed(rows)} | {weights} | "
                     f"{mean([r['fit_seconds'] for r in rows]):.1f} |")
    table = "\n".join(lines)
    (RESULTS / "image_blend_check.md").write_text(
        "# blend against its base on digits and Omniglot (bench/image_blend_check.py)\n\nAccuracy on every image "
        "not drawn; efficientnet-lite0 at 224, head features. Machine: " + json.dumps(machine()) + "\n\n" + table + "\n")
    return table


if __name__ == "__main__":
    simple_main("image_blend_check", __file__, worker, report=report,
                specs=[{"dataset": d, "k": k, "seed": seed, "method": m}
                       for d in DATASETS for k in (1, 5, 10) for seed in (0, 1, 2) for m in ("probe", "blend")])
