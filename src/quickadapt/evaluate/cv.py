"""Out-of-fold predictions on the user's own few examples: the accuracy estimate a fit reports,
and the confidences the abstain threshold is calibrated on."""
from __future__ import annotations

from typing import Callable

import numpy as np
from sklearn.model_selection import StratifiedKFold

from quickadapt.data.dataset import Dataset


def n_folds(data: Dataset, n_splits: int) -> int:
    """How many folds `folds` makes of `n_splits` asked for: no more than the smallest scored
    class has examples, since each fold holds out one or more of every class (0: no folds)."""
    counts = np.unique(data.labels, return_counts=True)[1]
    several = counts[counts >= 2]
    return min(n_splits, int(several.min())) if len(several) >= 2 and n_splits >= 2 else 0


def folds(data: Dataset, n_splits: int, seed: int):
    """(scored indices, [(training indices, held-out positions in scored), ...]) for stratified
    cross-validation over the examples of every class that has two or more; None when fewer
    than two classes have two. A class with a single example is never held out (its fold would
    test a class the training never saw): that example joins every training fold, unscored."""
    names, counts = np.unique(data.labels, return_counts=True)
    several = names[counts >= 2]
    if len(several) < 2:
        return None
    in_folds = np.isin(data.labels, several)
    scored, always = np.flatnonzero(in_folds), np.flatnonzero(~in_folds)
    splitter = StratifiedKFold(n_splits=n_folds(data, n_splits), shuffle=True, random_state=seed)
    return scored, [(np.sort(np.concatenate([scored[train_pos], always])), test_pos)
                    for train_pos, test_pos in splitter.split(np.zeros(len(scored)), data.labels[scored])]


def out_of_fold(data: Dataset, fit: Callable[[Dataset], object], n_splits: int, seed: int):
    """(scored indices, predicted labels, top scores) for the examples `folds` scores, each from
    a model that never saw it; None when there are no folds. `fit(train) -> model` with
    `model.predict(inputs) -> (labels, scores)`."""
    split = folds(data, n_splits, seed)
    if split is None:
        return None
    scored, pairs = split
    pred = np.empty(len(scored), dtype=object)
    score = np.zeros(len(scored))
    for train_idx, test_pos in pairs:
        model = fit(data.subset(train_idx))
        labels, scores = model.predict(data.subset(scored[test_pos]).inputs)
        pred[test_pos] = labels
        score[test_pos] = scores
    return scored, pred, score


SIGNIFICANCE = 0.05  # below this p-value a lead on held-out examples is more than noise


def mcnemar_p(right: np.ndarray, other_right: np.ndarray) -> float:
    """McNemar's exact one-sided p-value that a model (`right`: which held-out examples it gets
    right) beats another on the same examples, from those only one of the two gets right: with a
    few dozen examples a lead of one or two is noise, which raw accuracies do not say."""
    from scipy.stats import binomtest

    only, only_other = int(np.sum(right & ~other_right)), int(np.sum(other_right & ~right))
    return float(binomtest(only, only + only_other, alternative="greater").pvalue) if only else 1.0


def oof_accuracy(data: Dataset, oof) -> float:
    """Accuracy of `out_of_fold`'s predictions on the examples it scored."""
    scored, pred, _ = oof
    return float(np.mean(pred == data.labels[scored]))


# share of in-scope examples that should keep their answer when abstaining is on
IN_SCOPE_KEEP = 0.9


def calibrate_threshold(scores: np.ndarray) -> float:
    """The confidence below which the model abstains: the (1 - IN_SCOPE_KEEP) quantile of
    out-of-fold confidences on the user's own (in-scope) examples."""
    return float(np.quantile(scores, 1 - IN_SCOPE_KEEP))
