"""Would `--method auto` choose better if DEV compared calibrated models? DEV (importance-weighted
cross-entropy on held-out source) prefers confident models; here each model's probabilities are
first scaled by one temperature T fitted to minimise the NLL of its held-out source predictions
(softmax(log p / T), a 1-D search on log T, T in [0.05, 20]), then DEV is read of the scaled
probabilities with the validator's own density ratios. The fits are bench/domain_auto_rule.py's
`run_one` (source-only and AUTO_CANDIDATES on the same 80 % of the source, no refit); target
labels score the choices only. Nothing in the library changes.

Rules (each keeps source-only unless a non-collapsed candidate beats it; among those, the lowest):
- `lowest DEV`: the library's rule, plain DEV;
- `lowest DEV(T)`: DEV of the scaled probabilities, T fitted on the same held-out source examples
  DEV reads (simple, slightly optimistic);
- `lowest DEV(T) split`: T cross-fitted on two seeded halves of them, each half's losses under the
  temperature fitted on the other (honest).

    OMP_NUM_THREADS=1 .venv/bin/python bench/domain_auto_temperature.py --cases sms --seeds 0,1,2
    .venv/bin/python bench/domain_auto_temperature.py --report

Rows: bench/results/domain_auto_temperature.jsonl (resumable); table: bench/results/domain_auto_temperature.md.
The rows there were made by these runs, in this order (OMP_NUM_THREADS=1, 2 shared CPU cores):

    --cases sms --seeds 0,1,2
    --cases clinc-noisy --seeds 0
    --cases digits-rot --seeds 0,1
    --cases A-W,C-D,W-C --seeds 0
    --cases A-W,C-D,W-C --seeds 1,2
    --cases clinc-noisy --seeds 2
    --cases digits-invert --seeds 0
    --cases A-C,A-D,C-A,C-W,D-A,D-C,D-W,W-A,W-D --seeds 0"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ResultStore, cases_main  # noqa: E402
from domain_auto_rule import choose, run_one  # noqa: E402

NAME = "domain_auto_temperature"
RULES = {"lowest DEV": "dev_risk", "lowest DEV(T)": "dev_t", "lowest DEV(T) split": "dev_t_split"}


def choose_by(methods: dict, key: str) -> str:
    """The non-collapsed method with the lowest `key`, source-only unless a candidate is below it."""
    if key == "dev_risk":
        return choose(methods, "lowest DEV")
    passing = [n for n, m in methods.items()
               if n == "source-only" or (not m["collapsed"] and m[key] < methods["source-only"][key])]
    return min(passing, key=lambda n: methods[n][key])


def report() -> None:
    import numpy as np

    rows = ResultStore(NAME).rows
    cases = list(dict.fromkeys(r["spec"]["case"] for r in rows))

    def gain(r, rule):
        m = r["methods"]
        return 100 * (m[choose_by(m, RULES[rule])]["target_accuracy"] - m["source-only"]["target_accuracy"])

    lines = ["# `--method auto` with temperature-scaled DEV: measured, not adopted", "",
             "Target accuracy of the kept method minus source-only's (points; held-out fits, the same 80 % of the source, "
             "no refit), mean over the seeds run (n); then the mean over cases, over runs, and the worst single run. "
             "Written by `bench/domain_auto_temperature.py`; its docstring defines the rules.", "",
             "| rule | " + " | ".join(f"{c} ({sum(r['spec']['case'] == c for r in rows)})" for c in cases)
             + " | mean over cases | mean over runs | worst |", "|---|" + "---|" * (len(cases) + 3)]
    for rule in RULES:
        per = {c: [gain(r, rule) for r in rows if r["spec"]["case"] == c] for c in cases}
        every = [v for vs in per.values() for v in vs]
        lines.append(f"| {rule} | " + " | ".join(f"{np.mean(per[c]):+.1f}" for c in cases)
                     + f" | {np.mean([np.mean(v) for v in per.values()]):+.2f} | {np.mean(every):+.2f} | {min(every):+.1f} |")
    names = [n for n in rows[0]["methods"] if n != "source-only"]
    lines += ["", "Per run: each method's target accuracy (%) and fitted temperature T (same-examples fit); the "
              "choice of each rule.", "",
              "| case | seed | source-only | " + " | ".join(names) + " | " + " | ".join(RULES) + " |",
              "|---|---|---|" + "---|" * (len(names) + len(RULES))]
    for r in rows:
        m = r["methods"]
        cells = [f"{100 * m[n]['target_accuracy']:.1f} (T {m[n]['temperature']:.2f}{', collapsed' if m[n]['collapsed'] else ''})"
                 for n in ["source-only", *names]]
        lines.append(f"| {r['spec']['case']} | {r['spec']['seed']} | " + " | ".join(cells) + " | "
                     + " | ".join(choose_by(m, k) for k in RULES.values()) + " |")
    lines += ["", "Per run, DEV of each method plain / DEV(T) / DEV(T) split (lower is better):", "",
              "| case | seed | " + " | ".join(["source-only", *names]) + " |", "|---|---|" + "---|" * (len(names) + 1)]
    for r in rows:
        m = r["methods"]
        lines.append(f"| {r['spec']['case']} | {r['spec']['seed']} | " + " | ".join(
            f"{m[n]['dev_risk']:.3f} / {m[n]['dev_t']:.3f} / {m[n]['dev_t_split']:.3f}" for n in ["source-only", *names]) + " |")
    (RESULTS / f"{NAME}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    cases_main(NAME, {"case": "sms,clinc-noisy,digits-rot,A-W,C-D,W-C"}, "0", run_one,
               lambda r: ", ".join(f"{rule} {choose_by(r['methods'], k)}" for rule, k in RULES.items()), report)


if __name__ == "__main__":
    main()
