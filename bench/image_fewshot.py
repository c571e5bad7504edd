"""Fashion-MNIST few-shot: 10 classes, K = 1, 5, 10, 20 training images per class, scored on
the 10,000 test images, 3 seeds (each seed draws one K-subset shared by all methods).
Methods: a transfer strategy on ImageNet-pretrained `efficientnet-lite0`, against conv4 trained
from random initialisation (the no-transfer baseline). Needs Debian's dataset-fashion-mnist.

    .venv/bin/python bench/image_fewshot.py --methods probe,conv4-scratch
    .venv/bin/python bench/image_fewshot.py --methods finetune --size 128
    .venv/bin/python bench/image_fewshot.py --methods probe --features stages
    .venv/bin/python bench/image_fewshot.py --methods finetune --params '{"augment": true}' --shots 10,20 --seeds 0
    .venv/bin/python bench/image_fewshot.py --methods probe --features stages --encoder-params '{"flip": true}'
    .venv/bin/python bench/image_fewshot.py --split val --methods probe --features stages
    .venv/bin/python bench/image_fewshot.py --report

`--split val` scores on VAL_SIZE images held out of the training split instead (the K-subsets
are then drawn from the rest): settings are tried there first, and test is run once after.

Results: bench/results/image_fewshot.jsonl (+ .md)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ResultStore, machine, mean, peak_mb, run_pending  # noqa: E402


VAL_SIZE, VAL_SEED = 3000, 12345  # --split val: the held-out part of the training split


def worker(spec: dict) -> dict:
    import numpy as np

    from quickadapt.adapt import adapt
    from quickadapt.data import load_dataset
    from quickadapt.data.sampling import sample_per_class
    from quickadapt.evaluate.baseline import fit_baseline
    from quickadapt.train import seed_everything

    train = load_dataset("builtin:fashion-mnist-train")
    if spec.get("split") == "val":
        held_out = np.zeros(len(train), bool)
        held_out[np.random.default_rng(VAL_SEED).choice(len(train), VAL_SIZE, replace=False)] = True
        train, test = train.subset(np.flatnonzero(~held_out)), train.subset(np.flatnonzero(held_out))
    else:
        test = load_dataset("builtin:fashion-mnist-test")
    few = sample_per_class(train, spec["k"], spec["seed"])
    import time

    started = time.perf_counter()
    if spec["method"] == "conv4-scratch":
        seed_everything(spec["seed"])
        model = fit_baseline(few, seed=spec["seed"])
    else:
        model = adapt(few, encoder="efficientnet-lite0", strategy=spec["method"], strategy_params=spec.get("params"),
                      encoder_params={"size": spec.get("size", 224), "features": spec.get("features", "head"),
                                      **spec.get("encoder_params", {})},
                      seed=spec["seed"], cv=0, progress=False)
    fit_seconds = time.perf_counter() - started
    labels, _ = model.predict(test.inputs)
    return {"accuracy": float(np.mean(np.asarray(labels, dtype=object) == test.labels)),
            "fit_seconds": round(fit_seconds, 2), "peak_mb": peak_mb()}


def report(store: ResultStore) -> str:
    groups: dict = {}
    for r in store.rows:
        if "error" not in r:
            s = r["spec"]
            method = s["method"] + "".join(f" {k}={v}" for k, v in sorted(s.get("params", {}).items()))
            features = s.get("features", "head") + "".join(
                f" {k}={v}" for k, v in sorted(s.get("encoder_params", {}).items()))
            groups.setdefault((s.get("split", "test"), method, features, s.get("size", 224), s["k"]), []).append(r)
    lines = ["| scored on | method | features | input size | K | seeds | accuracy (mean) | per seed | fit s | peak MB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (split, method, features, size, k), rows in sorted(groups.items(), key=lambda kv: (kv[0][0] != "test", kv[0])):
        per = ", ".join(f"{r['accuracy']:.1%}" for r in sorted(rows, key=lambda r: r["spec"]["seed"]))
        size_text = "28 (native)" if method == "conv4-scratch" else str(size)
        features_text = "-" if method == "conv4-scratch" else features
        split_text = "test" if split == "test" else f"val ({VAL_SIZE} held out of train)"
        lines.append(f"| {split_text} | {method} | {features_text} | {size_text} | {k} | {len(rows)} | {mean([r['accuracy'] for r in rows]):.1%} | {per} | "
                     f"{mean([r['fit_seconds'] for r in rows]):.1f} | {mean([r['peak_mb'] for r in rows]):.0f} |")
    table = "\n".join(lines)
    (RESULTS / "image_fewshot.md").write_text(
        "# Fashion-MNIST few-shot (bench/image_fewshot.py)\n\n10-class test accuracy on the 10,000 test images. "
        "Machine: " + json.dumps(machine()) + "\n\n" + table + "\n")
    return table


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--methods", default="probe,conv4-scratch")
    ap.add_argument("--shots", default="1,5,10,20")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--size", type=int, default=224, help="efficientnet input size (128 is the fast mode)")
    ap.add_argument("--features", default="head", help="efficientnet features: head (1280-d) or stages (1792-d)")
    ap.add_argument("--params", help='strategy settings as JSON, e.g. \'{"augment": true}\'')
    ap.add_argument("--encoder-params", help='more efficientnet settings as JSON, e.g. \'{"flip": true}\'')
    ap.add_argument("--split", default="test", choices=["test", "val"], help="score on test, or on images held out of train")
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    store = ResultStore("image_fewshot")
    if not args.report:
        todo = [
            {"method": m, "k": k, "seed": seed, **({} if m == "conv4-scratch" else {"size": args.size}),
             **({"features": args.features} if m != "conv4-scratch" and args.features != "head" else {}),
             **({"params": json.loads(args.params)} if args.params and m != "conv4-scratch" else {}),
             **({"encoder_params": json.loads(args.encoder_params)} if args.encoder_params and m != "conv4-scratch" else {}),
             **({"split": "val"} if args.split == "val" else {})}
            for seed in [int(s) for s in args.seeds.split(",")]
            for k in [int(k) for k in args.shots.split(",")]
            for m in args.methods.split(",")
        ]
        run_pending(store, __file__, todo)
    print(report(store))


if __name__ == "__main__":
    main()
