"""`--strategy auto` against each of its candidates fitted directly, on validation data only.

Text: K utterances per intent drawn from CLINC150's training split (all 150 intents; K = 1, 5,
10), scored on the 3,000 in-scope utterances of its validation split; `banking-k5-budget`: the
banking domain's 15 intents at K = 5 with `budget=600` (fine-tuning joins the candidates), scored
on their 300 validation utterances. Images: scikit-learn's digits as 8x8 images (K = 1, 5, 10),
every image not drawn scored (the README's test tables are not used). MiniLM / efficientnet-lite0,
library defaults, cv=3 for every fit (the command line's default: the fixed strategies pay for
their estimate and threshold too, so the wall times compare like with like). Each (case, seed)
is one K-subset shared by every fit.

The auto fit's model is the chosen candidate's fitted with the same seed, so its accuracy must
equal that fit's (checked: `same_as_chosen`). Each row also keeps every candidate's
out-of-fold accuracy and its distance from the best in paired standard errors, so the accuracy
other margins of the rule would have given (0: the best out of fold; 2), and the rule taking
prototypes, the simplest, first, is read from the same fits (`rules` in the table).

    OMP_NUM_THREADS=1 .venv/bin/python bench/strategy_auto.py --cases clinc-k1,clinc-k5,clinc-k10,digits-k1,digits-k5,digits-k10 --seeds 0,1,2
    OMP_NUM_THREADS=1 .venv/bin/python bench/strategy_auto.py --cases banking-k5-budget --seeds 0,1,2
    .venv/bin/python bench/strategy_auto.py --report

Rows: bench/results/strategy_auto.jsonl (resumable); summary: bench/results/strategy_auto.json and .md.
The rows there were made by the two runs above, in that order (OMP_NUM_THREADS=1, 2 shared CPU
cores); the first run's `reason` texts are worded as before the summary line took its final form
(the same rule and choices: "the simplest candidate within 1 standard error of the best is chosen"
where it now reads "the rule: the first of probe, prototypes within 1 standard error of the best")."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ResultStore, cases_main, machine, mean  # noqa: E402

NAME = "strategy_auto"
CASES = ["clinc-k1", "clinc-k5", "clinc-k10", "digits-k1", "digits-k5", "digits-k10"]
MARGINS = (0.0, 1.0, 2.0)


def case_data(case: str, seed: int):
    """(the K-subset, the validation data, encoder, auto's settings)."""
    import numpy as np

    from quickadapt.data import load_dataset
    from quickadapt.data.sampling import sample_per_class

    kind, k = case.split("-k")[0], int(case.split("-k")[1].split("-")[0])
    if kind in ("clinc", "banking"):
        train, val = load_dataset("builtin:clinc150-train"), load_dataset("builtin:clinc150-val")
        if kind == "banking":
            train = train.subset(np.flatnonzero(train.groups == "banking"))
        val = val.subset(np.flatnonzero(np.isin(val.labels, train.classes)))  # in-scope (and banking's) only
        return sample_per_class(train, k, seed), val, "minilm", ({"budget": 600} if "budget" in case else {})
    data = load_dataset("builtin:digits")
    rng = np.random.default_rng(seed)
    drawn = sorted(i for c in data.classes for i in rng.choice(np.flatnonzero(data.labels == c), size=k, replace=False))
    return data.subset(drawn), data.subset(np.setdiff1d(np.arange(len(data)), drawn)), "efficientnet-lite0", {}


def run_one(case: str, seed: int) -> dict:
    import numpy as np

    from quickadapt.adapt import adapt

    few, val, encoder, auto_params = case_data(case, seed)

    def fitted(strategy: str, params: dict | None = None) -> dict:
        started = time.perf_counter()
        model = adapt(few, encoder=encoder, strategy=strategy, strategy_params=params, seed=seed, cv=3, progress=False)
        seconds = time.perf_counter() - started
        labels, _ = model.predict(val.inputs)
        return {"accuracy": float(np.mean(np.asarray(labels, dtype=object) == val.labels)),
                "seconds": round(seconds, 2), "model": model}

    auto = fitted("auto", auto_params)
    record = auto["model"].info["auto"]
    fixed = {name: fitted(name) for name in record["candidates"]}
    chosen = record["chosen"]
    return {"n_train": len(few), "n_val": len(val), "chosen": chosen, "reason": record["reason"],
            "candidates": record["candidates"], "auto_accuracy": auto["accuracy"], "auto_seconds": auto["seconds"],
            "same_as_chosen": auto["accuracy"] == fixed[chosen]["accuracy"],
            "fixed": {n: {"accuracy": f["accuracy"], "seconds": f["seconds"]} for n, f in fixed.items()}}


def rule_choice(candidates: dict, margin: float, order: list[str]) -> str | None:
    """What the first-within-`margin`-standard-errors rule picks from a row's record, taking the
    candidates in `order` (0: the best out of fold, the first of equals)."""
    scored = {n: candidates[n] for n in order if "behind_best_se" in candidates.get(n, {})}
    if not scored:
        return None
    if margin == 0:
        return max(scored, key=lambda n: scored[n]["cv_accuracy"])
    return next(n for n, c in scored.items() if c["behind_best_se"] is not None and c["behind_best_se"] <= margin)


def orders(names: list[str]) -> dict[str, list[str]]:
    """The library's order (the row's own) and the rejected one: prototypes, the simplest, first."""
    return {"library": names, "prototypes first": ["prototypes"] + [n for n in names if n != "prototypes"]}


def report() -> None:
    store = ResultStore(NAME)
    groups: dict = {}
    for r in store.rows:
        groups.setdefault(r["spec"]["case"], []).append(r)
    summary, lines = {}, []
    rules = [("library", m) for m in MARGINS] + [("prototypes first", 1.0)]
    lines.append("| case | seeds | auto | " + " | ".join(f"{o}, {m:g} SE" for o, m in rules)
                 + " | fixed candidates | chosen (per seed) | auto s | fixed s |")
    lines.append("|---|---|---|" + "---|" * len(rules) + "---|---|---|---|")
    for case in sorted(groups, key=lambda c: (CASES + [c]).index(c)):
        rows = sorted(groups[case], key=lambda r: r["spec"]["seed"])
        names = list(rows[0]["fixed"])
        by_rule = {}
        for o, m in rules:
            accs = [r["fixed"][rule_choice(r["candidates"], m, orders(names)[o]) or r["chosen"]]["accuracy"]
                    for r in rows]
            by_rule[f"{o}, {m:g} SE"] = mean(accs)
        s = {"seeds": [r["spec"]["seed"] for r in rows], "auto": mean([r["auto_accuracy"] for r in rows]),
             "auto_per_seed": [r["auto_accuracy"] for r in rows], "chosen": [r["chosen"] for r in rows],
             "rules": by_rule,
             "fixed": {n: mean([r["fixed"][n]["accuracy"] for r in rows]) for n in names},
             "auto_seconds": mean([r["auto_seconds"] for r in rows]),
             "fixed_seconds": {n: mean([r["fixed"][n]["seconds"] for r in rows]) for n in names},
             "same_as_chosen": all(r["same_as_chosen"] for r in rows)}
        summary[case] = s
        lines.append(f"| {case} | {len(rows)} | {s['auto']:.1%} | " + " | ".join(f"{v:.1%}" for v in by_rule.values())
                     + " | " + ", ".join(f"{n} {s['fixed'][n]:.1%}" for n in names)
                     + f" | {', '.join(s['chosen'])} | {s['auto_seconds']:.1f} | "
                     + ", ".join(f"{n} {s['fixed_seconds'][n]:.1f}" for n in names) + " |")
    table = "\n".join(lines)
    (RESULTS / f"{NAME}.json").write_text(json.dumps({"machine": machine(), "cases": summary}, indent=1) + "\n")
    (RESULTS / f"{NAME}.md").write_text(
        "# `--strategy auto` against its candidates (bench/strategy_auto.py)\n\nValidation data only (CLINC150 "
        "val in-scope; digits: every image not drawn). Accuracy means over seeds; `rule m SE`: what the rule "
        "with margin m, taking the candidates in the library's order or prototypes first, would have scored on the same fits (0: the best out of fold); seconds are whole fits "
        "with cv=3 (auto: every candidate's folds and the chosen one's final fit). Machine: "
        + json.dumps(machine()) + ", shared 2 cores, OMP_NUM_THREADS=1.\n\n" + table + "\n")
    print(table)


if __name__ == "__main__":
    cases_main(NAME, {"case": ",".join(CASES)}, "0,1,2", run_one,
               lambda r: f"auto {r['auto_accuracy']:.1%} ({r['chosen']}), "
                         + ", ".join(f"{n} {f['accuracy']:.1%}" for n, f in r["fixed"].items())
                         + f", {r['auto_seconds']:.0f} s", report)
