"""`blend` against its base (`probe` on efficientnet-lite0) on image data unlike ImageNet beyond
Fashion-MNIST: scikit-learn's digits (8x8) and the first 40 Omniglot characters (by name).
K = 1, 5, 10 examples per class, 3 seeds (each seed one K-subset shared by both methods); every
image not drawn is scored.

    .venv/bin/python bench/image_blend_check.py
    .venv/bin/python bench/image_blend_check.py --report

Results: bench/results/image_blend_check.jsonl (+ .md)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ResultStore, machine, mean, peak_mb, run_pending  # noqa: E402

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
    groups: dict = {}
    for r in store.rows:
        if "error" not in r:
            s = r["spec"]
            groups.setdefault((s["dataset"], s["k"], s["method"]), []).append(r)
    lines = ["| data | K | method | seeds | accuracy (mean) | per seed | blend weights | fit s |", "|---|---|---|---|---|---|---|---|"]
    for (dataset, k, method), rows in sorted(groups.items()):
        rows = sorted(rows, key=lambda r: r["spec"]["seed"])
        weights = ", ".join(f"{r['blend']['weight']:g}" for r in rows) if method == "blend" else ""
        lines.append(f"| {dataset} | {k} | {method} | {len(rows)} | {mean([r['accuracy'] for r in rows]):.1%} | "
                     f"{', '.join(format(r['accuracy'], '.1%') for r in rows)} | {weights} | "
                     f"{mean([r['fit_seconds'] for r in rows]):.1f} |")
    table = "\n".join(lines)
    (RESULTS / "image_blend_check.md").write_text(
        "# blend against its base on digits and Omniglot (bench/image_blend_check.py)\n\nAccuracy on every image "
        "not drawn; efficientnet-lite0 at 224, head features. Machine: " + json.dumps(machine()) + "\n\n" + table + "\n")
    return table


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    store = ResultStore("image_blend_check")
    if not args.report:
        run_pending(store, __file__, [{"dataset": d, "k": k, "seed": seed, "method": m}
                                      for d in DATASETS for k in (1, 5, 10) for seed in (0, 1, 2) for m in ("probe", "blend")])
    print(report(store))


if __name__ == "__main__":
    main()
