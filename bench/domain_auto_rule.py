"""How `--method auto` chooses, and whether a stricter rule would do less harm: each run is one
`adapt_domain(method="auto", refit=False)` (source-only and AUTO_CANDIDATES, each fitted on the
same 80 % of the source and scored by DEV on the other 20 %), and the rules below are then read
from the same fits. Target labels score the choices only.

Rules (each keeps source-only unless a non-collapsed candidate passes; among those passing, the
lowest DEV risk):
- `lowest DEV` (the library's rule): any candidate whose DEV risk is below source-only's;
- `DEV > z se`: its DEV gain over source-only must exceed z standard errors of the paired
  per-example difference of DEV terms on the held-out source (w*l + eta*(w - 1), each model with
  its own weights), z = 1, 2, 3;
- `DEV > 2 se & SND`, `DEV > 2 se & entropy`: that, and a target-side criterion must agree (SND
  higher than source-only's; mean target prediction entropy lower).

Cases:
- `sms`: CLINC150's 15 banking intents, 1,500 training utterances written well as the source, the
  300 validation utterances as SMS (lowercase, `u`/`pls`/`acct`, filler words dropped, typos) as
  the target, the 450 test utterances written alike to score (docs/domain.md); minilm;
- `digits-rot`, `digits-invert`, `clinc-noisy`: bench/domain_shifts.py's shifts;
- `A-W`, ...: Office-Caltech10 SURF pairs (bench/domain_office_caltech.py), mlp.

    OMP_NUM_THREADS=1 .venv/bin/python bench/domain_auto_rule.py --cases sms,A-W,C-D,W-C --seeds 0,1,2
    .venv/bin/python bench/domain_auto_rule.py --report

`run_one` also records each model's temperature-scaled DEV (`temperature_scaled_dev`), read by
bench/domain_auto_temperature.py; the rows here predate it.

Rows: bench/results/domain_auto_rule.jsonl (resumable); table: bench/results/domain_auto_rule.md.
The rows there were made by these runs, in this order (OMP_NUM_THREADS=1, 2 shared CPU cores):

    --cases digits-rot,C-D,clinc-noisy,W-C,sms,A-W --seeds 0
    --cases sms,A-W,C-D,W-C --seeds 1
    --cases digits-invert --seeds 0
    --cases sms --seeds 2
    --cases A-C,A-D,C-A,C-W,D-A,D-C,D-W,W-A,W-D --seeds 0
    --cases A-W,C-D,W-C,clinc-noisy --seeds 2
    --cases digits-rot --seeds 1"""
from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ResultStore, cases_main  # noqa: E402

NAME = "domain_auto_rule"
SHIFTS = ["sms", "clinc-noisy", "digits-rot", "digits-invert"]
DEV_PAIRS = ["A-W", "C-D", "W-C"]
Z = (1, 2, 3)


def sms_data():
    """(source, target without labels, labelled target test): the SMS-style banking text."""
    import random

    from quickadapt.data import Dataset, load_dataset

    rng = random.Random(0)
    sms = {"you": "u", "your": "ur", "are": "r", "please": "pls", "what": "wat", "to": "2", "for": "4",
           "thanks": "thx", "tomorrow": "tmrw", "account": "acct", "because": "bc", "with": "w/",
           "want": "wanna", "going to": "gonna", "i am": "im", "do not": "dont", "don't": "dont",
           "can't": "cant", "money": "$", "and": "n", "know": "kno", "need": "need", "transfer": "xfer",
           "balance": "bal", "information": "info", "number": "#", "checking": "chk", "savings": "sav"}
    drop = {"the", "a", "an", "can", "could", "would", "you", "me", "please", "tell", "i", "like", "to", "know", "is", "of"}
    questions = {"what", "how", "can", "could", "is", "are", "do", "does", "when", "where", "why", "which", "who",
                 "will", "would", "should", "may", "did", "have", "has"}

    def well_written(t):
        t = t.strip()
        t = re.sub(r"\bi\b", "I", t)
        t = t[0].upper() + t[1:]
        return t if t[-1] in ".?!" else t + ("?" if t.split()[0].lower() in questions else ".")

    def typo(w):
        if len(w) < 4:
            return w
        i = rng.randrange(len(w) - 1)
        op = rng.choice(["swap", "drop", "double", "near"])
        if op == "swap":
            return w[:i] + w[i + 1] + w[i] + w[i + 2:]
        if op == "drop":
            return w[:i] + w[i + 1:]
        if op == "double":
            return w[:i] + w[i] + w[i:]
        return w[:i] + rng.choice("qwertyuiopasdfghjklzxcvbnm") + w[i + 1:]

    def noisy(t):
        t = re.sub(r"[^\w\s$']", " ", t.lower()).replace("'", "")
        for k, v in sms.items():
            if rng.random() < 0.8:
                t = re.sub(rf"\b{re.escape(k.replace(chr(39), ''))}\b", v, t)
        words = t.split()
        kept = [w for w in words if not (w in drop and rng.random() < 0.6)] or words
        return " ".join(typo(w) if rng.random() < 0.2 else w for w in kept)

    train = load_dataset("builtin:clinc150-train")
    intents = set(train.labels[train.groups == "banking"])

    def rows(name):
        d = load_dataset(name)
        return [(x, y) for x, y in zip(d.inputs, d.labels) if y in intents]

    def dataset(pairs, name):
        return Dataset("text", [x for x, _ in pairs], [y for _, y in pairs], name=name)

    source = dataset([(well_written(x), y) for x, y in rows("builtin:clinc150-train")], "sms-source")
    target = dataset([(noisy(x), y) for x, y in rows("builtin:clinc150-val")], "sms-target")
    test = dataset([(noisy(x), y) for x, y in rows("builtin:clinc150-test")], "sms-target-test")
    return source, target.without_labels(), test


def case_data(case: str):
    if case == "sms":
        return sms_data()
    if case in SHIFTS:
        from domain_shifts import shift_data

        source, target, _ = shift_data(case)
        return source, target.without_labels(), target
    from domain_office_caltech import load

    s, t = case.split("-")
    target = load(t)
    return load(s), target.without_labels(), target


def fit_temperature(log_p, y) -> float:
    """The one temperature T minimising the NLL of softmax(log p / T) on (log_p, y): a 1-D search on log T,
    T in [0.05, 20] (log p is the logits up to a per-row shift, which softmax ignores)."""
    import numpy as np
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    def nll(log_t):
        return -log_softmax(log_p / np.exp(log_t), axis=1)[np.arange(len(y)), y].mean()

    return float(np.exp(minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded").x))


def temperature_scaled_dev(validator, model) -> dict:
    """DEV of the model's temperature-scaled probabilities on the validator's held-out source, with the
    validator's own density ratios (the same features, seed and clipping as `scores_and_terms`), the
    temperature fitted (a) on the same held-out source examples DEV reads (`dev_t`) and (b) cross-fitted on
    two seeded halves, each half's losses under the temperature fitted on the other (`dev_t_split`)."""
    import numpy as np
    from scipy.special import log_softmax

    from quickadapt.domain.base import representation
    from quickadapt.domain.validate import density_ratio, dev_terms
    from quickadapt.model import MAIN_TASK
    from quickadapt.transfer.base import encode_labels

    zs, ps = representation(model, validator.source_val.inputs)
    zt, _ = representation(model, validator.target.inputs)
    _, y = encode_labels(validator.source_val.labels, model.classes[MAIN_TASK])
    w = density_ratio(zs, zt, seed=validator.seed, normalise=False)
    log_p = np.log(np.clip(ps, 1e-12, None))

    def losses(rows, t):
        return -log_softmax(log_p[rows] / t, axis=1)[np.arange(len(rows)), y[rows]]

    every = np.arange(len(y))
    t = fit_temperature(log_p, y)
    halves = np.array_split(np.random.default_rng(validator.seed).permutation(len(y)), 2)
    split_losses = np.empty(len(y))
    t_split = []
    for fit_rows, score_rows in ((halves[0], halves[1]), (halves[1], halves[0])):
        t_half = fit_temperature(log_p[fit_rows], y[fit_rows])
        split_losses[score_rows] = losses(score_rows, t_half)
        t_split.append(t_half)
    return {"temperature": t, "dev_t": float(np.mean(dev_terms(losses(every, t), w))),
            "temperature_split": t_split, "dev_t_split": float(np.mean(dev_terms(split_losses, w)))}


def run_one(case: str, seed: int) -> dict:
    import numpy as np

    from quickadapt.domain import adapt_domain
    from quickadapt.domain.validate import Validator

    source, target, test = case_data(case)
    captured = []  # each fit's per-example DEV terms and target predictions, in fitting order
    original = Validator.scores_and_terms

    def capture(self, model):
        scores, terms = original(self, model)
        captured.append((terms["dev"], np.asarray(model.predict_proba(self.target.inputs)).argmax(1),
                         temperature_scaled_dev(self, model)))
        return scores, terms

    Validator.scores_and_terms = capture
    try:
        model = adapt_domain(source, target, "auto", None, None if case in SHIFTS else "mlp", seed, "cpu",
                             target_test=test, refit=False, progress=False)
    finally:
        Validator.scores_and_terms = original
    methods = model.info["methods"]
    assert len(captured) == len(methods)
    fits = dict(zip(methods, captured))
    base_terms, base_answers, _ = fits["source-only"]
    out = {}
    for name, entry in methods.items():
        terms, answers, scaled = fits[name]
        d = terms - base_terms
        out[name] = {
            "target_accuracy": entry["target_test_accuracy"], "dev_risk": entry["dev_risk"],
            "gain": float(-d.mean()), "gain_se": float(d.std(ddof=1) / np.sqrt(len(d))),
            "collapsed": bool(entry.get("collapsed")), "snd": entry["snd"], "target_entropy": entry["target_entropy"],
            "agrees_with_source_only": float(np.mean(answers == base_answers)),
            "dev_weight_mean": entry["dev_weight_mean"], "source_val_accuracy": entry["source_val_accuracy"],
            **scaled,
        }
    return {"n_source_val": model.info["n_source_val"], "methods": out}


def choose(methods: dict, rule: str) -> str:
    """The method `rule` keeps, from one run's per-method figures."""
    so = methods["source-only"]
    passing = ["source-only"]
    for name, m in methods.items():
        if name == "source-only" or m["collapsed"] or m["gain"] <= 0:
            continue
        if rule.startswith("DEV >"):
            z = float(rule.split()[2])
            if m["gain"] <= z * m["gain_se"] or ("SND" in rule and m["snd"] <= so["snd"]) or (
                    "entropy" in rule and m["target_entropy"] >= so["target_entropy"]):
                continue
        passing.append(name)
    return min(passing, key=lambda n: methods[n]["dev_risk"])


NOTE = (
    "Selection honesty: these rules were designed after the full Office-Caltech runs of "
    "bench/results/domain_office_caltech.md had been seen (auto 49.2 % mean there), and judged on the development "
    "pairs A->W, C->D, W->C and the non-Office shifts first; the other nine pairs were run once afterwards, seed 0 "
    "only (time; noisy CLINC at seeds 0 and 2, rotated digits 0 and 1, inverted digits 0). No rule was adopted: `auto` keeps the lowest DEV (docs/domain.md, Known limits)."
)
RULES = ["lowest DEV", *(f"DEV > {z} se" for z in Z), "DEV > 2 se & SND", "DEV > 2 se & entropy"]


def report() -> None:
    import numpy as np

    rows = ResultStore(NAME).rows
    cases = list(dict.fromkeys(r["spec"]["case"] for r in rows))
    lines = ["# How `--method auto` chooses: the library's rule against stricter ones", "",
             "Target accuracy of the kept method minus source-only's (points; held-out fits, the same 80 % of the source, "
             "no refit), mean over the seeds run (n), and in the last columns the mean over cases and the worst single run. "
             "Written by `bench/domain_auto_rule.py`; its docstring defines the rules.", "",
             "| rule | " + " | ".join(f"{c} ({sum(r['spec']['case'] == c for r in rows)})" for c in cases)
             + " | mean | worst |", "|---|" + "---|" * (len(cases) + 2)]
    for rule in RULES:
        per = {c: [] for c in cases}
        for r in rows:
            m = r["methods"]
            per[r["spec"]["case"]].append(100 * (m[choose(m, rule)]["target_accuracy"] - m["source-only"]["target_accuracy"]))
        worst = min(v for vs in per.values() for v in vs)
        lines.append(f"| {rule} | " + " | ".join(f"{np.mean(per[c]):+.1f}" for c in cases)
                     + f" | {np.mean([np.mean(v) for v in per.values()]):+.2f} | {worst:+.1f} |")
    lines += ["", "Per run: source-only's target accuracy; each candidate's accuracy and DEV gain over source-only in "
              "standard errors (t); the choice of the library's rule and of `DEV > 2 se`.", "",
              "| case | seed | source-only | " + " | ".join(n for n in rows[0]["methods"] if n != "source-only")
              + " | lowest DEV | DEV > 2 se |", "|---|---|---|" + "---|" * (len(rows[0]["methods"]) + 1)]
    for r in rows:
        m = r["methods"]
        cells = [f"{100 * v['target_accuracy']:.1f} (t {v['gain'] / v['gain_se']:+.1f}{', collapsed' if v['collapsed'] else ''})"
                 for n, v in m.items() if n != "source-only"]
        lines.append(f"| {r['spec']['case']} | {r['spec']['seed']} | {100 * m['source-only']['target_accuracy']:.1f} | "
                     + " | ".join(cells) + f" | {choose(m, 'lowest DEV')} | {choose(m, 'DEV > 2 se')} |")
    lines += ["", NOTE]
    (RESULTS / f"{NAME}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    cases_main(NAME, {"case": ",".join(SHIFTS + DEV_PAIRS)}, "0,1,2", run_one,
               lambda r: f"lowest DEV {choose(r['methods'], 'lowest DEV')}, DEV > 2 se {choose(r['methods'], 'DEV > 2 se')}",
               report)


if __name__ == "__main__":
    main()
