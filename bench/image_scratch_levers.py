"""Levers on the from-scratch conv4 inside `blend` (the images' no-transfer baseline,
evaluate/baseline.py: 30 epochs, AdamW 1e-3, weight decay 0.01, no augmentation), measured on
Fashion-MNIST's 3,000 images held out of the training split (as `bench/image_fewshot.py --split
val` holds them out and draws the K-subsets), K = 1, 5, 10, 20, 3 seeds. Each row: the probe
alone (efficientnet-lite0, 224 px, `features=stages`; its log-probabilities are cached per K and
seed), the scratch variant alone, and their mix as `blend` mixes them at scratch shares 0.2
(blend's default), 0.3 and 0.4. None of these beat the defaults, so none reached test.

    .venv/bin/python bench/image_scratch_levers.py base
    .venv/bin/python bench/image_scratch_levers.py aug '{"augment": true}'
    .venv/bin/python bench/image_scratch_levers.py aug100 '{"augment": true, "epochs": 100}'
    .venv/bin/python bench/image_scratch_levers.py shift2e60 '{"augment": true, "epochs": 60, "shift": 0.072}'
    .venv/bin/python bench/image_scratch_levers.py e60 '{"epochs": 60}'
    .venv/bin/python bench/image_scratch_levers.py ls '{"label_smoothing": 0.1}'
    .venv/bin/python bench/image_scratch_levers.py ens3 '{"nets": 3}'
    .venv/bin/python bench/image_scratch_levers.py ls-ens3 '{"label_smoothing": 0.1, "nets": 3}'
    .venv/bin/python bench/image_scratch_levers.py pools3 '{"enc": {"pools": 3}}'
    .venv/bin/python bench/image_scratch_levers.py wd0.5 '{"weight_decay": 0.5}'
    .venv/bin/python bench/image_scratch_levers.py ch128 '{"enc": {"channels": 128}}'
    .venv/bin/python bench/image_scratch_levers.py lr3e-3 '{"lr": 0.003, "head_lr": 0.003}'
    .venv/bin/python bench/image_scratch_levers.py --report

Settings are the `finetune` strategy's (augment: encoder.augment's random shift, up to an eighth
of the side), plus levers it lacks, patched in for this experiment only: `shift` (the shift as a
fraction of the side; 0.072 is 2 of 28 pixels), `label_smoothing`, `nets` (that many networks,
seeds 1000 apart, their log-probabilities averaged) and `enc` (conv4 settings).
Results: bench/results/image_scratch_levers.jsonl (+ .md)."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine  # noqa: E402

VAL_SIZE, VAL_SEED = 3000, 12345  # as bench/image_fewshot.py --split val
CACHE = Path(os.environ.get("QUICKADAPT_LEVERS_CACHE", Path.home() / ".cache" / "quickadapt-bench" / "scratch_levers"))
ROWS = RESULTS / "image_scratch_levers.jsonl"
SHARES = (0.2, 0.3, 0.4)


def task(k: int, seed: int):
    from quickadapt.data import load_dataset
    from quickadapt.data.sampling import sample_per_class

    train = load_dataset("builtin:fashion-mnist-train")
    held_out = np.zeros(len(train), bool)
    held_out[np.random.default_rng(VAL_SEED).choice(len(train), VAL_SIZE, replace=False)] = True
    train, val = train.subset(np.flatnonzero(~held_out)), train.subset(np.flatnonzero(held_out))
    return sample_per_class(train, k, seed), val


def log_proba(model, inputs) -> np.ndarray:
    return np.log(np.clip(model.predict_proba(inputs), 1e-12, None))


def patch_levers(params: dict) -> dict:
    """Pop the levers `finetune` has no setting for and patch them in; return the rest."""
    import torch

    import quickadapt.encoders.base as encoder_base

    params = dict(params)
    smoothing, shift = params.pop("label_smoothing", 0.0), params.pop("shift", None)
    if smoothing:
        cross_entropy = torch.nn.functional.cross_entropy
        torch.nn.functional.cross_entropy = lambda a, b, **kw: cross_entropy(a, b, label_smoothing=smoothing, **kw)
    if shift is not None:
        random_shift = encoder_base.random_shift
        encoder_base.random_shift = lambda x, g, fraction=0.125: random_shift(x, g, shift)
    return params


def run(variant: str, params: dict, shots=(1, 5, 10, 20), seeds=(0, 1, 2)) -> None:
    from quickadapt.adapt import adapt
    from quickadapt.data.images import all_grey
    from quickadapt.encoders import create_encoder
    from quickadapt.model import mix_log_proba
    from quickadapt.train import seed_everything
    from quickadapt.transfer import FitContext, create_strategy

    nets, encoder_settings = params.get("nets", 1), params.get("enc", {})
    settings = {k: v for k, v in patch_levers(params).items() if k not in ("nets", "enc")}
    CACHE.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        for k in shots:
            few, val = task(k, seed)
            truth = np.searchsorted(few.classes, val.labels)
            cached = CACHE / f"probe_fmnist_{k}_{seed}.npy"
            if not cached.exists():
                model = adapt(few, encoder="efficientnet-lite0", strategy="probe",
                              encoder_params={"size": 224, "features": "stages"}, seed=seed, cv=0, progress=False)
                np.save(cached, log_proba(model, val.inputs))
            probe = np.load(cached)
            started, logs = time.perf_counter(), []
            for j in range(nets):
                net_seed = seed + 1000 * j
                seed_everything(net_seed)  # as fit_baseline seeds its conv4
                encoder = create_encoder("conv4", pretrained=False, grey=all_grey(few.inputs), **encoder_settings)
                model = create_strategy("finetune", probe_init=False, **{"epochs": 30, **settings}).fit(
                    encoder, few, FitContext(device="cpu", seed=net_seed, progress=False))
                logs.append(log_proba(model, val.inputs))
            seconds = time.perf_counter() - started  # fits and predicting the 3,000 images
            scratch = mix_log_proba(logs, [1 / nets] * nets)
            row = {"variant": variant, "params": params, "k": k, "seed": seed, "seconds": round(seconds, 1),
                   "load_1min": round(os.getloadavg()[0], 2),
                   "probe": float(np.mean(probe.argmax(1) == truth)), "scratch": float(np.mean(scratch.argmax(1) == truth)),
                   **{f"blend {w}": float(np.mean(mix_log_proba([probe, scratch], [1 - w, w]).argmax(1) == truth)) for w in SHARES}}
            print(json.dumps(row), flush=True)
            with open(ROWS, "a") as f:
                f.write(json.dumps(row) + "\n")


def report() -> str:
    rows = {}
    for line in ROWS.read_text().splitlines():
        r = json.loads(line)
        rows[(r["variant"], r["k"], r["seed"])] = r  # a rerun replaces its row
    groups: dict = {}
    for (variant, k, _), r in rows.items():
        groups.setdefault((variant, k), []).append(r)
    order = list(dict.fromkeys(v for v, _ in groups))
    lines = ["| variant | settings | K | seeds | probe | scratch | blend 0.2 | blend 0.3 | blend 0.4 | scratch s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (variant, k), rs in sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1])):
        mean = lambda field: sum(r[field] for r in rs) / len(rs)  # noqa: E731
        lines.append(f"| {variant} | `{json.dumps(rs[0]['params'])}` | {k} | {len(rs)} | {mean('probe'):.1%} | "
                     f"{mean('scratch'):.1%} | " + " | ".join(f"{mean(f'blend {w}'):.1%}" for w in SHARES) +
                     f" | {mean('seconds'):.1f} |")
    table = "\n".join(lines)
    (RESULTS / "image_scratch_levers.md").write_text(
        "# Levers on blend's from-scratch conv4, Fashion-MNIST validation (bench/image_scratch_levers.py)\n\n"
        f"Accuracy on {VAL_SIZE} images held out of the training split, means of 3 seeds; `scratch s`: the "
        "scratch model's fit and its prediction of those images, beside other jobs (load 5-13 on 2 cores). "
        "Machine: " + json.dumps(machine()) + "\n\n" + table + "\n")
    return table


if __name__ == "__main__":
    if sys.argv[1:] == ["--report"]:
        print(report())
    else:
        run(sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
