"""The verdicts `fit` and `domain-adapt` print, from the figures they record (the manifest's
`metrics`): written once, for the command line's summaries and for `quickadapt report`."""
from __future__ import annotations

import json


def fit_summary(r: dict) -> str:
    """What `fit` prints: the cross-validated estimate, the baseline and the verdict on transfer."""
    lines = [f"adapted {r['encoder']} with {r['strategy']} on {r['n_examples']} examples, {r['n_classes']} classes -> {r['out']}"]
    if "cv_accuracy" in r:
        of = f"{r['n_distinct']} distinct" if "n_distinct" in r else f"{r['n_examples']}"
        partial = (f" ({r['cv_scored']} of {of} examples; {r['cv_note']})" if "cv_note" in r
                   else f" (on {r['cv_scored']} distinct examples: copies count once)" if "n_distinct" in r
                   else "")
        asked = r.get("cv")
        folds = r.get("cv_folds", asked)
        fewer = f", not {asked}: the smallest class held out has {folds} distinct examples" if folds != asked else ""
        # (a model written before the interval was kept has none)
        ci = ("" if "cv_accuracy_ci95" not in r
              else " (95% CI {:.1%}-{:.1%})".format(*r["cv_accuracy_ci95"]))
        lines.append(f"cross-validated accuracy ({folds} folds{fewer}): {r['cv_accuracy']:.1%}{ci}{partial}")
        if "cv_balanced_accuracy" in r:  # only where class sizes differ more than 3x (evaluate/cv.IMBALANCE)
            lines.append(f"balanced accuracy (mean recall of the classes scored): {r['cv_balanced_accuracy']:.1%}; "
                         "the figure above weighs each class by its number of examples")
        lines += disagreements(r.get("cv_disagreements", []))
    elif "cv_note" in r:
        lines.append(f"no accuracy estimate: {r['cv_note']}")
    if "auto" in r:  # every candidate's estimate, the choice and why, in one line
        lines.append(f"auto chose {r['auto']['reason']}")
    if "blend" in r:
        b = r["blend"]
        why = (f" ({b['by']}: blend {b['cv_accuracy_blend']:.1%}, transferred alone {b['cv_accuracy_transferred']:.1%})"
               if "cv_accuracy_blend" in b else f" ({b['by']})" if "by" in b else "")
        lines.append(f"blend: the from-scratch model's share is {b['weight']:g}{why}")
    base = r.get("baseline")
    if base and "cv_accuracy" in base:
        balanced = f" (balanced {base['cv_balanced_accuracy']:.1%})" if "cv_balanced_accuracy" in base else ""
        lines.append(f"baseline ({base['name']}, no transfer): {base['cv_accuracy']:.1%}{balanced}")
    elif base:  # asked for, but cross-validation scored nothing: no figure to compare
        lines.append(f"baseline ({base['name']}, no transfer): no estimate either, so no comparison")
    from quickadapt.evaluate.cv import SIGNIFICANCE

    # from random weights nothing pretrained is transferred: what is compared is the strategy's training
    trained = None if r.get("encoder_pretrained", True) else f"{r['strategy']} on {r['encoder']}"
    if r.get("negative_transfer"):
        lines.append(f"warning: {trained or 'the transferred model'} is NOT better than the baseline that transfers "
                     "nothing" + baseline_lead(r, SIGNIFICANCE))
    elif r.get("negative_transfer") is False:
        p = r.get("p_transfer_better")
        what = trained or "transfer"
        if p is not None and p >= SIGNIFICANCE:
            lines.append(f"{what} is not clearly better than the baseline: the lead is within the noise of "
                         f"{r.get('cv_scored', r['n_examples'])} held-out examples (McNemar p = {p:.2f})")
        else:
            lines.append(("transfer helps: better" if what == "transfer" else f"{what} is better")
                         + " than the baseline" + (f" (McNemar {p_shown(p)})" if p is not None else ""))
    if not r.get("encoder_pretrained", True):
        lines.append(f"note: {r['encoder']} starts from random weights, so nothing pretrained was transferred")
    return "\n".join(lines)


SHOWN_DISAGREEMENTS = 5  # more examples predicted otherwise than this are listed by --json only


def disagreements(found: list[dict]) -> list[str]:
    """Lines naming the examples the folds' models, which never saw them, put in another class:
    the most confident first, the likeliest to be mislabelled."""
    if not found:
        return []
    n = len(found)
    more = f"; --json lists all {n}" if n > SHOWN_DISAGREEMENTS else ""
    lines = [f"{count(n, 'example')} predicted as another class out of fold (mislabelled, or hard; "
             f"the most confident first{more}):"]
    for d in found[:SHOWN_DISAGREEMENTS]:
        # a model's info keeps the rows alone, and feature vectors have no input but their row
        shown = "" if d.get("input") is None else str(d["input"])
        # cut in the middle: an image's path keeps its file name, a text its start and end
        shown = shown if len(shown) <= 60 else shown[:28] + "..." + shown[-29:]
        lines.append(f"  row {d['row']}{': ' + json.dumps(shown, ensure_ascii=False) if shown else ''} labelled "
                     f"{d['label']}, predicted {d['predicted']} ({d['score']:.2f})")
    return lines


def baseline_lead(r: dict, significance: float) -> str:
    """How far the baseline's tie or lead over the transferred model is more than noise: on a few
    held-out examples one answer apart is a lead (73.3 against 80.0 % on 15 wine samples: 96.3
    against 95.7 % on the 163 held out), and saying only "NOT better" overstates it."""
    n = r.get("cv_scored", r["n_examples"])
    p = r.get("p_baseline_better")
    if r["cv_accuracy"] == r["baseline"]["cv_accuracy"]:
        return f" (they tie on {n} held-out examples)"
    if p is None:
        return ""
    if p >= significance:
        return f", though the baseline's lead is within the noise of {n} held-out examples (McNemar p = {p:.2f})"
    return f": the baseline is better (McNemar {p_shown(p)})"


def domain_summary(r: dict) -> str:
    """What `domain-adapt` prints: each candidate under the label-free criterion, and the verdict."""
    lines = [f"adapted with {r['method']} ({r['features'] or r['encoder']}) -> {r['out']}", f"label-free {r['criterion']} risk estimate (lower is better):"]
    for name, m in r["methods"].items():
        mark = "*" if name == r["method"] else " "
        line = f"{mark} {name:<14} {m['criterion']:.3f}  held-out source accuracy {m['source_val_accuracy']:.1%}"
        if "target_test_accuracy" in m:
            line += f"  target-test accuracy {m['target_test_accuracy']:.1%} (evaluation only)"
        if m.get("collapsed"):
            line += "  COLLAPSED (target predictions on few classes)"
        lines.append(line)
    final = f"saved: {r['method']} fitted on {r['n_source_fit']} source examples" + (" (refit on all of them)" if r["refit"] else "")
    if "target_test_accuracy" in r:
        final += f", target-test accuracy {r['target_test_accuracy']:.1%} (evaluation only)"
    lines.append(final)
    if r["negative_transfer"]:
        lines.append("warning: adaptation looks WORSE than source-only by the label-free estimate" + lead_noise(r, -1))
    elif r["negative_transfer"] is False:
        lines.append("adaptation looks better than source-only by the label-free estimate" + lead_noise(r, +1))
    versus = r.get("target_test_vs_source_only")
    if versus:  # what the labelled target test says, which may contradict the estimate
        verdict = {"better": f"adaptation helped (McNemar {p_shown(versus['p_better'])})",
                   "worse": f"adaptation did WORSE than source-only (McNemar {p_shown(versus['p_worse'])})",
                   "within noise": "the difference is within the noise of "
                                   f"{versus['n']} rows (McNemar p = {min(versus['p_better'], versus['p_worse']):.2f})"}
        lines.append(f"on the target test, fitted on the same held-out split: {r['method']} {versus['accuracy']:.1%}, "
                     f"source-only {versus['source_only_accuracy']:.1%}; {versus['only_adapted_right']} rows right for "
                     f"{r['method']} only, {versus['only_source_only_right']} for source-only only: "
                     f"{verdict[versus['verdict']]}")
    return "\n".join(lines)


def lead_noise(r: dict, sign: int) -> str:
    """The size of the label-free lead in its standard errors, and whether that is within its noise
    (nothing where the verdict is not the criterion's: a collapsed candidate is worse whatever its risk)."""
    t = r.get("criterion_lead_se")
    if t is None or t * sign < 0:
        return ""
    return f" ({abs(t):.1f} standard errors" + (": within its noise)" if abs(t) < 2 else ")")


def p_shown(p: float) -> str:
    """A p-value as the summaries print it, to 3 places: one that rounds to 0.000 is `p < 0.001`,
    not `p = 0.000` (the baseline 77.5 % against 35.0 % out of fold on 40 Omniglot drawings),
    which claims a certainty no test on a few dozen examples gives."""
    return "p < 0.001" if p < 0.0005 else f"p = {p:.3f}"


def count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
