"""Office-Caltech10 SURF unsupervised domain adaptation (issue 8 protocol): all 12 source ->
target pairs, every method, 3 seeds, per pair and mean, each figure under label-free selection
(deep embedded validation on held-out source data) next to the oracle (best by target labels).

    OMP_NUM_THREADS=1 .venv/bin/python bench/domain_office_caltech.py            # everything (hours on 2 cores)
    .venv/bin/python bench/domain_office_caltech.py --pairs A-W --methods source-only,mcc --seeds 0
    .venv/bin/python bench/domain_office_caltech.py --report                     # rewrite the tables only

Protocol, fixed:
- preprocessing: each sample L1-normalised, then z-scored per domain with that domain's own
  statistics (`quickadapt.data.office_caltech`);
- baseline `logreg`: logistic regression on all source data, C chosen by 5-fold cross-validation
  on the source from {0.001, 0.01, 0.1, 1, 10}; the target plays no part;
- every other method runs through `quickadapt.domain.adapt_domain` on the `mlp` encoder (one
  256-wide layer, dropout 0.5), trained on 80 % of the source; the other 20 % is the held-out
  source the validators read. Its grid (GRID below) is searched per pair and seed; the
  label-free figure takes the grid point with the lowest DEV risk and refits it on all of the
  source (what `adapt_domain` returns by default: a `refit` row), the oracle is the grid point
  with the best target accuracy (held-out fits). `auto` is what `--method auto` would pick, per pair and seed: among
  source-only and the library's candidates (mcc, cdan-e, dann) at their DEV-selected points,
  collapsed ones vetoed, the lowest DEV risk (the negative-transfer guard). `meda-avg` chooses
  nothing: it is meda with `ensemble` (AS_LIBRARY), which averages meda's target class
  probabilities over a fixed grid (meda.ENSEMBLE_GRID), fitted held out (its held-out figure) and
  refitted on all of the source (label-free), as any method row is.
- defaults and grids were frozen on the development pairs A->W, C->D and W->C before any
  other pair's target labels were read by a method (see the results file for the one exception).

One fit per row; rows go to bench/results/domain_office_caltech.jsonl as they finish, so an
interrupted run resumes where it stopped. Tables: bench/results/domain_office_caltech.md and
a summary in bench/results/domain_office_caltech.json."""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ResultStore, machine, mean  # noqa: E402

ROOT = Path(__file__).resolve().parent / "data" / "office_caltech10_surf"
DOMAINS = "ACDW"
PAIRS = [f"{s}-{t}" for s, t in itertools.permutations(DOMAINS, 2)]
DEV_PAIRS = ["A-W", "C-D", "W-C"]
SEEDS = [0, 1, 2]
NAME = "domain_office_caltech"

TRADE = [{"trade_off": 0.3}, {"trade_off": 1.0}, {"trade_off": 3.0}]
GRID = {
    "source-only": [{}],
    "dann": TRADE,
    "mmd": TRADE,
    "coral": TRADE + [{"mode": "closed"}],
    "cdan": TRADE,
    "cdan-e": TRADE,
    "mcc": TRADE,
    "self-training": [{"threshold": 0.8}, {"threshold": 0.9}, {"threshold": 0.95}],
    "reweight": [{"C": 0.01}, {"C": 0.1}, {"C": 1.0}],
    "centroids": [{}],  # its default only: DEV reads held-out source, which says little about target clusters
    "meda": [{}],  # closed form, the paper's defaults (two choices made on the development pairs, see meda.py)
    "meda-avg": [{}],  # one run: meda's ensemble, the average of its 9 members, nothing to choose
}
# rows that are a library method with fixed settings, under their own name. meda's `ensemble`
# averages the target class probabilities over lambda x subspace dimension (meda.ENSEMBLE_GRID)
# instead of choosing one point: no selection at all, so none of DEV's selection noise. That grid
# was set on the development pairs A->W, C->D, W->C (3 seeds) when this script did the averaging
# itself (its 72 rows were regenerated through the library, each with the same accuracy): DEV's single
# choice among the 9 points reached 46.5 % mean target accuracy there (refitted), the default
# 46.2, the average of DEV's top 3 46.9, top 5 48.1, all 9 48.2
AS_LIBRARY = {"meda-avg": ("meda", {"ensemble": True})}
METHODS = ["logreg", *GRID]
DISCLOSURE = (
    "Selection honesty: defaults and grids were set on the development pairs A->W, C->D, W->C. Two other "
    "looks at target labels happened before they were frozen, both recorded here: the logistic baseline on "
    "all 12 pairs (to check the issue's 46.2 % figure; no method involved), and every method with default "
    "settings on D->W while choosing the test shift (D->W was rejected as a test shift; no setting was "
    "changed because of it). `checkpoints` (DEV-selected early stopping) stays off: on the development pairs "
    "it cost mcc 1.6 points and source-only 1.8 points (mean target accuracy, seed 0). Self-training's "
    "class-balanced loss (now its default) was adopted after its collapse on rotated digits (the unit-test "
    "shift), checked on A->W only; its earlier A->W rows were discarded. `centroids` was added later, "
    "designed and checked on the development pairs only (seeds 0 and 1). `meda` was added in a later session: "
    "the paper's defaults, except per-dimension scaling and the kernel width, both chosen on the development pairs "
    "only (full-source runs outside this script: 47.5 vs 45.5 % mean for MEDA's per-example scaling), and frozen before "
    "any other pair was run; it then joined `auto`'s candidates. `meda-avg` was added in a later session, designed on the "
    "development pairs only (3 seeds) and frozen before any other pair was run: meda's probabilities averaged over "
    "lambda {1, 10, 100} x dim {10, 20, 30}, each point fitted as a grid point is (held out, then refitted), nothing "
    "chosen; there DEV's single choice among the 9 reached 46.5 % mean (refitted), meda's default 46.2, the averages of "
    "DEV's top 3, top 5 and all 9 points 46.9, 48.1 and 48.2 (held-out fits: 45.7 for DEV's choice, 45.5, 47.4, 47.4 "
    "against 45.6); the choice was made when W->C had only seed 0 (then 45.8, 46.2, 46.5, 47.7, 48.2), and the "
    "three seeds, complete before any other pair was run, ranked the rules the same. The rule then became meda's "
    "`ensemble` setting, grid and averaging unchanged (not tuned again on any pair); its 72 rows, regenerated "
    "through the library, gave each the same target accuracy as the script's own averaging. Two other "
    "departures from the reference code (jindongwang/transferlearning, code/traditional/MEDA) were checked there and "
    "left as they are: the adaptive mu from an in-sample linear SVM on the unscaled GFK features (theirs; ours a "
    "held-out logistic regression) and a self-connected kNN graph (theirs) change no dev-pair accuracy by more than 0.1."
)
PUBLISHED = {"1-NN": 31.4, "TCA+1NN": 43.6, "linear SVM": 45.0, "JDA": 46.3, "CORAL": 48.8, "JGSA": 50.6, "TKL": 51.1, "MEDA": 52.7}


def load(domain: str):
    from quickadapt.data.office_caltech import load_office_caltech

    return load_office_caltech(domain, ROOT)


def run_logreg(pair: str, seed: int) -> dict:
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    s, t = pair.split("-")
    source, target = load(s), load(t)
    search = GridSearchCV(
        LogisticRegression(max_iter=3000), {"C": [0.001, 0.01, 0.1, 1.0, 10.0]},
        cv=StratifiedKFold(5, shuffle=True, random_state=seed),
    ).fit(source.inputs, source.labels)
    accuracy = float(np.mean(search.predict(target.inputs) == target.labels))
    return {"target_accuracy": accuracy, "C": search.best_params_["C"]}


def run_method(pair: str, method: str, params: dict, seed: int) -> dict:
    from quickadapt.domain import adapt_domain

    s, t = pair.split("-")
    source, target = load(s), load(t)
    name, fixed = AS_LIBRARY.get(method, (method, {}))
    model = adapt_domain(
        source, target.without_labels(), name, {**fixed, **params}, "mlp", seed, "cpu",
        target_test=target, compare=False, progress=False,
    )
    entry = model.info["methods"][name]
    return {
        "target_accuracy": entry["target_test_accuracy"],
        **{k: entry[k] for k in (
            "dev_risk", "dev_weight_mean", "iwv_risk", "snd", "im", "target_entropy", "target_class_entropy",
            "source_val_accuracy", "seconds",
        )},
    }


def run_refit(pair: str, method: str, params: dict, seed: int) -> dict:
    """What `adapt_domain(..., refit=True)` returns once DEV has chosen `params`: the method
    fitted again, same seed, on all of the source (without repeating the held-out fit)."""
    import numpy as np

    from quickadapt.domain import create_method
    from quickadapt.domain.adapt import build_encoder
    from quickadapt.domain.base import DomainContext
    from quickadapt.train import seed_everything

    s, t = pair.split("-")
    source, target = load(s), load(t)
    name, fixed = AS_LIBRARY.get(method, (method, {}))
    seed_everything(seed)
    base = build_encoder("mlp", source, target=target.without_labels())  # as adapt_domain builds it
    seed_everything(seed)
    model = create_method(name, **fixed, **params).fit(base, source, target.without_labels(), DomainContext(seed=seed, progress=False))
    labels, _ = model.predict(target.inputs)
    return {"target_accuracy": float(np.mean(np.asarray(labels) == target.labels))}


def dev_choice(store: ResultStore, pair: str, method: str, seed: int) -> dict | None:
    """The grid point DEV picks for (pair, method, seed), once every point has a row."""
    rows = [store_row(store, {"pair": pair, "method": method, "params": p, "seed": seed}) for p in GRID[method]]
    return None if any(r is None for r in rows) else min(rows, key=lambda r: r["dev_risk"])["spec"]["params"]


def store_row(store: ResultStore, spec: dict) -> dict | None:
    k = store.key(spec)
    return next((r for r in store.rows if store.key(r["spec"]) == k), None)


def run(pairs, methods, seeds) -> None:
    store = ResultStore(NAME)
    todo = [
        {"pair": p, "method": m, "params": params, "seed": seed}
        for p in pairs for m in methods for seed in seeds for params in ([{}] if m == "logreg" else GRID[m])
    ]
    run_specs(store, todo)
    # then the label-free choice of each (pair, method, seed), refitted on all of the source
    chosen = [(p, m, seed, dev_choice(store, p, m, seed)) for p in pairs for m in methods if m != "logreg" for seed in seeds]
    run_specs(store, [{"pair": p, "method": m, "params": params, "seed": seed, "refit": True}
                      for p, m, seed, params in chosen if params is not None])


def run_specs(store: ResultStore, todo: list[dict]) -> None:
    for i, spec in enumerate(todo):
        if store.done(spec):
            continue
        started = time.perf_counter()
        if spec["method"] == "logreg":
            result = run_logreg(spec["pair"], spec["seed"])
        elif spec.get("refit"):
            result = run_refit(spec["pair"], spec["method"], spec["params"], spec["seed"])
        else:
            result = run_method(spec["pair"], spec["method"], spec["params"], spec["seed"])
        result["wall_seconds"] = round(time.perf_counter() - started, 2)
        store.add(spec, result)
        print(f"[{i + 1}/{len(todo)}] {spec['pair']} {spec['method']} {spec['params']} seed {spec['seed']}"
              f"{' refit' if spec.get('refit') else ''}: {100 * result['target_accuracy']:.1f} %", file=sys.stderr, flush=True)


def summarise(rows: list[dict]) -> dict:
    """Per (method, pair), means over seeds of: `selected` (the DEV-chosen grid point refitted on
    all of the source; None until its refit rows exist), `held_out` (that point's held-out fit)
    and `oracle` (the grid point with the best target accuracy)."""
    cells: dict = {}
    by_run: dict = {}
    refit: dict = {}
    for r in rows:
        sp = r["spec"]
        if sp.get("refit"):
            refit[(sp["method"], sp["pair"], sp["seed"], json.dumps(sp["params"], sort_keys=True))] = r["target_accuracy"]
        else:
            by_run.setdefault((sp["method"], sp["pair"], sp["seed"]), []).append(r)

    def refitted(r: dict) -> float | None:
        sp = r["spec"]
        if sp["method"] == "logreg":  # fitted on all of the source already
            return r["target_accuracy"]
        return refit.get((sp["method"], sp["pair"], sp["seed"], json.dumps(sp["params"], sort_keys=True)))

    def add(key, sel: dict, oracle: float, **extra) -> None:
        cell = cells.setdefault(key, {"selected": [], "held_out": [], "oracle": [], **{k: [] for k in extra}})
        cell["selected"].append(refitted(sel))
        cell["held_out"].append(sel["target_accuracy"])
        cell["oracle"].append(oracle)
        for k, v in extra.items():
            cell[k].append(v)

    chosen: dict = {}
    for (method, pair, seed), runs in by_run.items():
        sel = min(runs, key=lambda r: r["dev_risk"]) if method != "logreg" else runs[0]
        if method != "logreg":
            chosen[(method, pair, seed)] = sel
        add((method, pair), sel, max(r["target_accuracy"] for r in runs))
    # auto, as `--method auto` decides: source-only and the library's candidates (each at its
    # DEV-selected grid point), collapsed ones vetoed, the lowest DEV risk kept (then refitted)
    from quickadapt.domain.adapt import AUTO_CANDIDATES, COLLAPSE_RATIO

    for pair, seed in sorted({(p, s) for (_, p, s) in chosen}):  # a set's order changed run to run: the json churned
        options = {m: r for (m, p, s), r in chosen.items() if p == pair and s == seed and m in ("source-only", *AUTO_CANDIDATES)}
        if len(options) < 1 + len(AUTO_CANDIDATES):
            continue
        floor = COLLAPSE_RATIO * options["source-only"]["target_class_entropy"]
        usable = [r for m, r in options.items() if m == "source-only" or r["target_class_entropy"] >= floor]
        best = min(usable, key=lambda r: r["dev_risk"])
        add(("auto", pair), best, max(r["target_accuracy"] for r in options.values()), picked=best["spec"]["method"])
    out = {}
    for (method, pair), cell in cells.items():
        complete = all(v is not None for v in cell["selected"])
        out.setdefault(method, {})[pair] = {
            "selected": 100 * mean(cell["selected"]) if complete else None,
            "held_out": 100 * mean(cell["held_out"]), "oracle": 100 * mean(cell["oracle"]),
            "seeds": len(cell["held_out"]), **({"picked": cell["picked"]} if "picked" in cell else {}),
        }
    return out


def report() -> None:
    store = ResultStore(NAME)
    table = summarise(store.rows)
    pairs = [p for p in PAIRS if any(p in v for v in table.values())]
    order = [m for m in [*METHODS, "auto"] if m in table]
    lines = [
        "# Office-Caltech10 SURF: unsupervised domain adaptation",
        "",
        "Target accuracy (%), mean over seeds. Each cell: label-free / oracle. Label-free: the grid point with the "
        "lowest DEV risk (held-out source), refitted on all of the source, as `adapt_domain` returns it; `-` until "
        "its refit rows exist. Oracle: the best grid point by target labels (held-out fits), for reference only. "
        "`held-out fit`: the label-free choice before its refit. `logreg`: the fixed source-only baseline (C by CV on "
        "the source, all source data). `meda-avg`: meda with `ensemble`, its class probabilities averaged over a fixed grid "
        "(meda.ENSEMBLE_GRID), nothing chosen, so its oracle is the average itself. Written by `bench/domain_office_caltech.py`; "
        "complete means 12 pairs x 3 seeds.",
        "",
        "| method | " + " | ".join(p.replace("-", "->") for p in pairs) + " | mean | mean, held-out fit |",
        "|---|" + "---|" * (len(pairs) + 2),
    ]
    summary = {"machine": machine(), "pairs": pairs, "methods": {}}
    num = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    for m in order:
        cells = [table[m].get(p) for p in pairs]
        complete = all(c is not None for c in cells)
        means = {k: (mean([c[k] for c in cells]) if complete and all(c[k] is not None for c in cells) else None)
                 for k in ("selected", "held_out", "oracle")}
        fmt = lambda c: f"{num(c['selected'])} / {num(c['oracle'])}" if c else "-"  # noqa: E731
        lines.append(f"| {m} | " + " | ".join(fmt(c) for c in cells) + f" | {fmt(means) if complete else '-'} | "
                     f"{num(means['held_out'])} |")
        summary["methods"][m] = {"per_pair": table[m], **{f"mean_{k}": v for k, v in means.items()}}
    for m in ("auto", "meda-avg"):
        if m not in table or "logreg" not in table:
            continue
        worst = {p: table[m][p]["selected"] - table["logreg"][p]["selected"] for p in pairs
                 if p in table[m] and p in table["logreg"] and table[m][p]["selected"] is not None}
        summary[f"{m}_minus_logreg"] = worst
        lines += ["", f"{m} minus logreg per pair (target: no pair below -2 points): "
                  + ", ".join(f"{p} {d:+.1f}" for p, d in worst.items())]
    for m in AS_LIBRARY:
        if m in table:
            lines += ["", f"{m}, held-out fits per pair: " + ", ".join(
                f"{p} {table[m][p]['held_out']:.1f}" for p in pairs if p in table[m])]
    lines += ["", DISCLOSURE]
    lines += ["", "Published means over the 12 pairs: " + ", ".join(f"{k} {v}" for k, v in PUBLISHED.items())
              + ". Target of issue 8: mean >= 53 % under label-free selection."]
    (RESULTS / f"{NAME}.md").write_text("\n".join(lines) + "\n")
    (RESULTS / f"{NAME}.json").write_text(json.dumps(summary, indent=1) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default=",".join(PAIRS), help="e.g. A-W,C-D (default: all 12)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    ap.add_argument("--dev", action="store_true", help="only the development pairs A-W, C-D, W-C")
    ap.add_argument("--report", action="store_true", help="rewrite the tables from stored rows only")
    args = ap.parse_args()
    if not args.report:
        from quickadapt.progress import set_quiet

        set_quiet(True)
        pairs = DEV_PAIRS if args.dev else args.pairs.split(",")
        bad = [p for p in pairs if p not in PAIRS] + [m for m in args.methods.split(",") if m not in METHODS]
        if bad:
            sys.exit(f"unknown pair or method: {', '.join(bad)}")
        run(pairs, args.methods.split(","), [int(s) for s in args.seeds.split(",")])
    report()


if __name__ == "__main__":
    main()
