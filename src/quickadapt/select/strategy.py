"""`--strategy auto`: the transfer strategy chosen for the user's own examples by the
cross-validated estimate `fit` reports anyway, among candidates that suit the data's kind.

Every candidate is scored on the same folds (one seed, one split), so their out-of-fold answers
pair example by example. The rule is the one-standard-error rule (Breiman et al.'s CART,
glmnet's lambda.1se): the first candidate, in the order of CANDIDATES, whose out-of-fold
accuracy is within MARGIN_SE standard errors of the best one's, the standard error being that of
their paired per-example difference. With a few dozen examples a lead of one or two answers is
noise, and the simpler model is as likely to be the better one on new inputs; a paired
difference is far less noisy than two accuracies side by side (they share the examples that are
easy or hard for both). The order is the library's default first (probe), then the others from
the cheapest: prototypes are simpler than the probe, but first in the order they were kept
within the noise on 2 of 3 CLINC150 subsets at K = 5, and auto scored 87.9 % on the validation
split against the probe's 89.6 % (the folds train on 2/3 of the examples, where the probe's lead
is smaller: bench/strategy_auto.py)."""
from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Callable

import numpy as np

from quickadapt.data.dataset import Dataset
from quickadapt.errors import BadInput
from quickadapt.evaluate.cv import n_folds, one_per_example, out_of_fold, paired_lead_se
from quickadapt.progress import log
from quickadapt.settings import Settings, bounded, build_config

AUTO = "auto"
# in the order the rule prefers among candidates within noise of the best: the default (a logistic
# head on frozen features), class means of those features, that head mixed with a network trained
# from scratch on the images
CANDIDATES = {"text": ("probe", "prototypes"), "features": ("probe", "prototypes"),
              "image": ("probe", "prototypes", "blend")}
# tried only within a stated time budget (`budget`), after the cheap ones: fine-tuning MiniLM was
# the best text strategy at K = 5 and 10 on CLINC150 (89.6 / 93.0 % against the probe's 88.3 /
# 91.8 %) at hundreds of times the probe's fit time; on images it tied the probe (README)
COSTLY = {"text": ("finetune",)}
# without folds (one example per class) there is nothing to choose by: the default, and for images
# blend at its default share, which beat the probe at K = 1 on digits (+9.2 points here) and the
# first 40 Omniglot characters (+1.0; bench/results/image_blend_check.md) and on Fashion-MNIST
# test (+1.6), though not on its validation images (-1.7)
FALLBACK = {"text": "probe", "features": "probe", "image": "blend"}
FOLDS = 3  # the choice's folds where the fit asks for no estimate (cv=0, FewShotClassifier's default)
MARGIN_SE = 1.0  # standard errors of the paired difference within which a candidate ties the best


@dataclass(frozen=True)
class AutoConfig(Settings):
    budget: float = bounded(0.0, means={0: "the cheap candidates only"})  # seconds the choice may take


class OverBudget(Exception):
    """A costly candidate's folds would not end within the budget."""


def auto_settings(params: dict | None) -> tuple[AutoConfig, dict[str, dict]]:
    """(auto's own settings, each candidate's settings) from `--set`: `budget=SECONDS`, and
    `CANDIDATE.KEY=value` for one candidate alone (probe.C=1), so that a setting meant for one
    never reaches another that does not take it. A plain KEY is refused: which candidate it was
    meant for cannot be guessed. Each candidate's settings are checked now, by its own names."""
    from quickadapt.transfer import create_strategy

    names = sorted({n for group in (CANDIDATES, COSTLY) for ns in group.values() for n in ns})
    own, per = {}, {}
    for key, value in (params or {}).items():
        name, dot, rest = str(key).partition(".")
        if dot and name in names:
            per.setdefault(name, {})[rest] = value
        elif dot:
            raise BadInput(f"setting {key!r} for strategy 'auto': {name!r} is not one of its candidates "
                           f"({', '.join(names)}); a candidate's setting is CANDIDATE.KEY=value, e.g. probe.C=1")
        else:
            own[key] = value
    try:
        cfg = build_config(AutoConfig, own, "strategy 'auto'")
    except BadInput as exc:
        if set(own) <= {f.name for f in fields(AutoConfig)}:  # a bad budget: the hint would lead astray
            raise
        raise BadInput(f"{exc}; a candidate's setting is CANDIDATE.KEY=value, e.g. probe.C=1") from None
    for name, settings in per.items():
        create_strategy(name, **settings)
    return cfg, per


def auto_candidates(modality: str, budget: float, settings: dict | None = None) -> list[str]:
    """The candidates for data of `modality`, in the rule's order; the costly ones with a budget.
    `settings` (auto_settings' per candidate): those for a candidate not tried are noted, not refused."""
    names = list(CANDIDATES[modality]) + (list(COSTLY.get(modality, ())) if budget > 0 else [])
    if budget > 0 and modality not in COSTLY:
        log(f"note: strategy 'auto' tries no costly candidate on {modality} data, so its budget is not used")
    unused = [n for n in settings or {} if n not in names]
    if unused:
        log(f"note: strategy 'auto' does not try {', '.join(unused)} on {modality} data"
            f"{' without a budget' if any(n in COSTLY.get(modality, ()) for n in unused) else ''}, "
            f"so {'its' if len(unused) == 1 else 'their'} settings are not used (candidates: {', '.join(names)})")
    return names


def choose_strategy(data: Dataset, names: list[str], fit_fold_for: Callable[[str], Callable], n_splits: int,
                    seed: int, ids: np.ndarray, budget: float, progress: bool = True):
    """(the chosen name, its out-of-fold result or None, the record for the model's info): each
    candidate's `out_of_fold` on the same folds, then the one-standard-error rule. `fit_fold_for(name)`
    gives the fold fit of that candidate; `budget` (seconds, 0: none) stops a costly candidate
    once its folds so far say the rest and the final fit would overrun it."""
    started = time.perf_counter()
    record, oofs = {}, {}
    for name in names:
        costly = name not in CANDIDATES[data.modality]
        fit = (_within_budget(fit_fold_for(name), started, budget, n_folds(data, n_splits, ids)) if costly
               else fit_fold_for(name))
        began = time.perf_counter()
        try:
            oof = out_of_fold(data, fit, n_splits, seed, progress=f"cross-validation folds ({name})" if progress else None,
                              ids=ids)
        except OverBudget as exc:
            record[name] = {"skipped": str(exc)}
            continue
        if oof is None:  # no folds: nothing to choose by
            chosen, why = FALLBACK[data.modality], "too few examples per class to cross-validate"
            # every candidate says why it has no estimate, as a skipped one does: the record's keys are the documented ones
            return chosen, None, {"candidates": {n: {"skipped": why} for n in names}, "chosen": chosen,
                                  "reason": f"{chosen}: {why}, so the default for {data.modality}",
                                  "margin_se": MARGIN_SE}
        oofs[name] = oof
        record[name] = {"cv_accuracy": float(np.mean(_right(data, oof, ids))),
                        "cv_seconds": round(time.perf_counter() - began, 3)}
    chosen, reason = _one_se_rule(data, oofs, ids, record)
    return chosen, oofs[chosen], {"candidates": record, "chosen": chosen, "reason": reason, "margin_se": MARGIN_SE}


def _right(data: Dataset, oof, ids: np.ndarray) -> np.ndarray:
    """Which distinct held-out examples `oof` answers right (each once, as `oof_accuracy` counts them)."""
    scored, pred, _ = oof
    keep = one_per_example(ids, scored)
    return pred[keep] == data.labels[scored[keep]]


def _one_se_rule(data: Dataset, oofs: dict, ids: np.ndarray, record: dict) -> tuple[str, str]:
    """The first candidate in `oofs` (CANDIDATES' order) within MARGIN_SE paired standard errors of
    the most accurate; each candidate's record gets `behind_best_se`. A candidate answering exactly as
    the best (no spread) ties it; one wrong on every example the best answers right (also no spread) is behind."""
    right = {name: _right(data, oof, ids) for name, oof in oofs.items()}
    best = max(right, key=lambda n: right[n].mean())  # the first of equals: the one the order prefers
    for name, r in right.items():
        se = paired_lead_se(1.0 - r, 1.0 - right[best])  # errors: positive where the best is ahead
        lead = float(np.mean(right[best]) - np.mean(r))
        # no spread: the same answers (a tie), or differing on every example, wrong where the best is right
        # (None: beyond any margin); behind on only some of the examples has a spread and a finite distance
        record[name]["behind_best_se"] = se if se is not None else (0.0 if lead == 0 else None)
    within = [n for n in right if record[n]["behind_best_se"] is not None and record[n]["behind_best_se"] <= MARGIN_SE]
    chosen = within[0]
    if chosen != best:
        why = f"{record[chosen]['behind_best_se']:.1f} standard errors behind {best}, within the noise"
    elif len(within) > 1:
        why = f"the most accurate ({', '.join(within[1:])} within the noise of it)"
    else:
        margins = [record[n]["behind_best_se"] for n in right if n != best and record[n]["behind_best_se"] is not None]
        why = ("the most accurate" + (f", {min(margins):.1f} standard errors or more ahead of the rest" if margins
                                      else ", ahead of the rest on every example where they differ")
               if len(right) > 1 else "the only candidate scored")
    shown = ", ".join(f"{n} {record[n]['cv_accuracy']:.1%}" for n in right)
    return chosen, (f"{chosen}: {why} (out of fold: {shown}; the rule: the first of {', '.join(right)} within "
                    f"{MARGIN_SE:g} standard error of the best)")


def _within_budget(fit: Callable, started: float, budget: float, n_splits: int) -> Callable:
    """`fit` for each fold, refusing (OverBudget) a fold that, at the pace of the folds before it,
    would leave the remaining folds and the final fit past `budget` seconds from `started`. The
    first fold has no pace to go by, so a choice can overrun the budget by one fold's fit."""
    done, began = [0], time.perf_counter()

    def fold(train):
        if done[0]:
            pace = (time.perf_counter() - began) / done[0]
            needed = pace * (n_splits - done[0] + 1)  # the folds left and the final fit
            if time.perf_counter() - started + needed > budget:
                raise OverBudget(f"over budget: {done[0]} fold(s) took {pace:.0f} s each, so the rest and the "
                                 f"final fit would end {time.perf_counter() - started + needed:.0f} s in, "
                                 f"past the {budget:g} s budget")
        elif time.perf_counter() - started >= budget:
            raise OverBudget(f"over budget: the cheaper candidates took the whole {budget:g} s")
        model = fit(train)
        done[0] += 1
        return model

    return fold
