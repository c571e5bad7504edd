"""`quickadapt demo`: few-shot intent classification on CLINC150, offline, in about a minute.

For each K, draws K training utterances per intent (150 intents), adapts MiniLM with two
strategies (the probe also with each intent's name as one more example, `fit --label-names`)
and trains the no-transfer baseline, then scores all on the 4,500 in-scope test utterances
(and, for probe, out-of-scope recall with abstaining on)."""
from __future__ import annotations

import time

import numpy as np

from quickadapt.adapt import adapt
from quickadapt.data import load_dataset
from quickadapt.data.sampling import sample_per_class
from quickadapt.errors import BadInput, option
from quickadapt.evaluate.baseline import fit_baseline
from quickadapt.progress import log

# (row, strategy, label_names)
DEMO_FITS = (("probe", "probe", False), ("probe + names", "probe", True), ("prototypes", "prototypes", False))


def run_demo(shots: list[int], *, seed: int = 0, device: str = "auto", progress: bool = True) -> dict:
    train = load_dataset("builtin:clinc150-train")
    most = int(min(np.unique(train.labels, return_counts=True)[1]))  # 100 utterances per intent
    if not shots or any(isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= most for k in shots):
        raise BadInput(f"{option('shots')} takes whole numbers from 1 to {most} (CLINC150's training utterances per intent), "
                       f"e.g. 1,5,10; got {','.join(map(str, shots)) or 'none'}")
    test = load_dataset("builtin:clinc150-test")
    in_scope = test.subset(np.flatnonzero(test.labels != "oos"))
    oos = test.subset(np.flatnonzero(test.labels == "oos"))
    rows = []
    for k in shots:
        few = sample_per_class(train, k, seed)
        for name, strategy, label_names in (*DEMO_FITS, ("baseline", None, False)):
            if progress:
                log(f"K={k}: {name}")
            started = time.perf_counter()
            if name == "baseline":
                model = fit_baseline(few, seed=seed)
            else:
                model = adapt(few, encoder="minilm", strategy=strategy, seed=seed, device=device, cv=3,
                              label_names=label_names, progress=progress)
            fit_seconds = time.perf_counter() - started
            pred, _ = model.predict(in_scope.inputs)
            row = {"k": k, "strategy": name, "accuracy": float(np.mean(np.asarray(pred) == in_scope.labels)),
                   "fit_seconds": round(fit_seconds, 2)}
            if name == "probe" and model.threshold is not None:
                abstained, _ = model.predict(oos.inputs, abstain=True)
                kept, _ = model.predict(in_scope.inputs, abstain=True)
                row["oos_recall"] = float(np.mean(np.asarray(abstained) == "__none__"))
                row["in_scope_answered"] = float(np.mean(np.asarray(kept) != "__none__"))
            rows.append(row)
    return {"dataset": "CLINC150 (150 intents, in-scope test, 4500 utterances)", "seed": seed, "results": rows,
            "table": _table(rows, shots)}


def _table(rows: list[dict], shots: list[int]) -> str:
    names = list(dict.fromkeys(r["strategy"] for r in rows))
    acc = {(r["strategy"], r["k"]): r["accuracy"] for r in rows}
    head = "CLINC150 few-shot intent classification (150 intents, in-scope test accuracy)\n"
    lines = [f"{'strategy':<34}" + "".join(f"{f'K={k}':>9}" for k in shots)]
    label = {"probe": "minilm + probe (logistic)", "probe + names": "  + intent names as examples",
             "prototypes": "minilm + cosine prototypes",
             "baseline": "tf-idf + logistic (no transfer)"}
    for n in names:
        lines.append(f"{label.get(n, n):<34}" + "".join(f"{acc[(n, k)]:>9.1%}" for k in shots))
    oos = [r for r in rows if "oos_recall" in r]
    tail = "".join(
        f"\nprobe K={r['k']} with --abstain: {r['oos_recall']:.1%} of out-of-scope queries refused, "
        f"{r['in_scope_answered']:.1%} of in-scope ones answered" for r in oos
    )
    return head + "\n".join(lines) + tail
