"""CLINC150 few-shot intent classification: every strategy at K = 1, 5, 10 (and K = all for
some), 3 seeds; each seed draws one K-subset shared by all strategies. Only the K labelled
utterances per intent are used. Scores: in-scope test accuracy (4,500 utterances), out-of-scope
recall at the default threshold, adaptation wall time and peak memory (one process per fit).

    .venv/bin/python bench/text_fewshot.py                     # everything (hours on 2 cores)
    .venv/bin/python bench/text_fewshot.py --strategies probe,prototypes --shots 1,5,10
    .venv/bin/python bench/text_fewshot.py --report            # rewrite the tables only
    .venv/bin/python bench/text_fewshot.py --cv-tuned --strategies lora,finetune --shots 5,10 --seeds 0
                                                               # tuned strategies' out-of-scope recall
    .venv/bin/python bench/text_fewshot.py --label-names --strategies probe,prototypes --k-all ''
                                                               # each intent's name as one more example

`--label-names` (`fit --label-names`) also gives every fit each intent's name as text
("card_declined" -> "card declined"): not one of the K utterances, so those rows are listed apart
from the issue's protocol (K labelled utterances only).

`joint` and `multitask` run on a domain split: target = the banking domain's 15 intents at K
shots, source = all training data of the other nine domains; `probe` and `finetune` (the same
tuning without the source) on the same target are their references. Results: bench/results/text_fewshot.jsonl (+ .md table)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ResultStore, machine, mean, peak_mb, run_pending  # noqa: E402

ALL_STRATEGIES = ["probe", "prototypes", "finetune", "freeze", "discriminative", "lora", "l2sp", "bss", "contrastive"]
DOMAIN_STRATEGIES = ["joint", "multitask"]
FROZEN = ["probe", "prototypes"]


def worker(spec: dict) -> dict:
    import numpy as np

    from quickadapt.adapt import adapt
    from quickadapt.data import load_dataset
    from quickadapt.data.sampling import sample_per_class

    train = load_dataset("builtin:clinc150-train")
    test = load_dataset("builtin:clinc150-test")
    source = None
    if spec.get("split") == "banking":
        banking = train.groups == "banking"
        source = train.subset(np.flatnonzero(~banking))
        train = train.subset(np.flatnonzero(banking))
        test = test.subset(np.flatnonzero((test.groups == "banking") | (test.labels == "oos")))
    k = spec["k"]
    few = train if k == "all" else sample_per_class(train, int(k), spec["seed"])
    # cv=3 is the CLI default: it calibrates the abstain threshold; fit_seconds is the final fit alone
    model = adapt(few, encoder="minilm", strategy=spec["strategy"], strategy_params=spec.get("params"),
                  source=source, seed=spec["seed"], cv=spec.get("cv", 3), label_names=spec.get("label_names", False),
                  progress=False)
    in_scope = test.labels != "oos"
    labels, scores = model.predict(test.inputs)
    labels = np.asarray(labels, dtype=object)
    if model.threshold is None:
        oos_recall = None
    else:
        refused = scores < model.threshold
        oos_recall = float(refused[~in_scope].mean()) if (~in_scope).any() else None
    return {
        "accuracy": float(np.mean(labels[in_scope] == test.labels[in_scope])),
        "oos_recall": oos_recall,
        "fit_seconds": model.info["fit_seconds"],
        "cv_seconds": model.info["cv_seconds"],
        "n_train": len(few),
        "peak_mb": peak_mb(),
    }


def specs(strategies, shots, seeds, k_all, cv_tuned=False, label_names=False):
    if label_names:
        for spec in specs(strategies, shots, seeds, k_all, cv_tuned):
            yield {**spec, "label_names": True}
        return
    if cv_tuned:  # tuned strategies with the CLI's default cv=3: a calibrated threshold, so OOS recall
        yield from ({"strategy": s, "k": k, "seed": seed, "cv": 3}
                    for seed in seeds for k in shots for s in strategies if s not in FROZEN + DOMAIN_STRATEGIES)
        return
    for seed in seeds:
        for k in shots:
            for s in strategies:
                if s in DOMAIN_STRATEGIES:
                    yield {"strategy": s, "k": k, "seed": seed, "split": "banking", "cv": 0}
                    yield {"strategy": "probe", "k": k, "seed": seed, "split": "banking"}
                    # the same tuning on the banking data alone: what the source itself adds
                    yield {"strategy": "finetune", "k": k, "seed": seed, "split": "banking", "cv": 0}
                elif s in FROZEN:
                    yield {"strategy": s, "k": k, "seed": seed}
                else:
                    # cross-validation would refit a tuned encoder three more times: skipped, so no
                    # abstain threshold (and no out-of-scope recall) for tuned strategies here
                    yield {"strategy": s, "k": k, "seed": seed, "cv": 0}
    for s in k_all:  # one seed: the subset is the whole training set; tuned ones skip CV as above
        yield {"strategy": s, "k": "all", "seed": 0, **({} if s in FROZEN else {"cv": 0})}


def report(store: ResultStore) -> str:
    groups: dict = {}
    for r in store.rows:
        if "error" in r:
            continue
        spec = r["spec"]
        # tuned strategies normally skip CV; rows with it (`--cv-tuned`) are listed apart
        name = (spec["strategy"] + (" (cv=3)" if spec.get("cv") == 3 else "")
                + (" + intent names" if spec.get("label_names") else ""))
        key = (spec.get("split", "all 150 intents"), name, str(spec["k"]))
        groups.setdefault(key, []).append(r)
    lines = ["| intents | strategy | K | seeds | accuracy (mean) | per seed | OOS recall | fit s | peak MB | threads | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (split, strat, k), rows in sorted(groups.items(), key=lambda x: (x[0][0], x[0][1], x[0][2].zfill(4))):
        acc = mean([r["accuracy"] for r in rows])
        per = ", ".join(f"{r['accuracy']:.1%}" for r in sorted(rows, key=lambda r: r["spec"]["seed"]))
        oos = mean([r.get("oos_recall") for r in rows])
        lines.append(
            f"| {split} | {strat} | {k} | {len(rows)} | {acc:.1%} | {per} | "
            f"{'' if oos is None else f'{oos:.1%}'} | {mean([r['fit_seconds'] for r in rows]):.1f} | "
            f"{mean([r.get('peak_mb') for r in rows]) or 0:.0f} | {threads(rows)} | {load(rows)} |"
        )
    table = "\n".join(lines)
    (RESULTS / "text_fewshot.md").write_text(
        "# CLINC150 few-shot (bench/text_fewshot.py)\n\nMiniLM (all-MiniLM-L6-v2), in-scope test accuracy, "
        "library defaults (no per-K tuning). `fit s` is the final fit alone (cached embeddings "
        "for frozen strategies; mean over seeds). `threads`: torch threads per fit (`?`: an early row, "
        "taken while other jobs shared the 2 cores, whose time overstates a quiet machine's). `load`: "
        "the highest 1-minute load average seen around the fits; with one thread per fit, a load up to "
        "2 means each fit had a core to itself. Machine: " + json.dumps(machine()) + "\n\n" + table + "\n"
    )
    return table


def threads(rows) -> str:
    seen = sorted({str(r.get("threads", "?")) for r in rows})
    return "/".join(seen)


def load(rows) -> str:
    loads = [max(r["load_1min"]) for r in rows if "load_1min" in r]
    return f"{max(loads):.1f}" if loads else "?"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--strategies", default=",".join(ALL_STRATEGIES + DOMAIN_STRATEGIES))
    ap.add_argument("--shots", default="1,5,10")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--k-all", default="probe,prototypes", help="strategies also run on all 100 utterances per intent")
    ap.add_argument("--cv-tuned", action="store_true",
                    help="tuned strategies with cv=3 (3 more fits each) for their out-of-scope recall, listed apart")
    ap.add_argument("--label-names", action="store_true", help="every fit also learns from each intent's name")
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    store = ResultStore("text_fewshot")
    if not args.report:
        todo = specs(args.strategies.split(","), [int(k) for k in args.shots.split(",")],
                     [int(s) for s in args.seeds.split(",")], [s for s in args.k_all.split(",") if s], args.cv_tuned,
                     args.label_names)
        run_pending(store, __file__, todo)
    print(report(store))


if __name__ == "__main__":
    main()
