"""Out-of-fold predictions on the user's own few examples: the accuracy estimate a fit reports,
and the confidences the abstain threshold is calibrated on."""
from __future__ import annotations

from typing import Callable

import numpy as np
from sklearn.model_selection import StratifiedKFold

from quickadapt.data.dataset import Dataset


def out_of_fold(data: Dataset, fit: Callable[[Dataset], object], n_splits: int, seed: int):
    """(predicted labels, top scores) for every example from a model that never saw it, or None
    when some class has fewer than 2 examples (a fold would hold a class unseen in training).
    `fit(train) -> model` with `model.predict(inputs) -> (labels, scores)`."""
    counts = np.unique(data.labels, return_counts=True)[1]
    n_splits = min(n_splits, int(counts.min()))
    if n_splits < 2:
        return None
    pred = np.empty(len(data), dtype=object)
    score = np.zeros(len(data))
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for train_idx, test_idx in folds.split(np.zeros(len(data)), data.labels):
        model = fit(data.subset(train_idx))
        labels, scores = model.predict(data.subset(test_idx).inputs)
        pred[test_idx] = labels
        score[test_idx] = scores
    return pred, score


# share of in-scope examples that should keep their answer when abstaining is on
IN_SCOPE_KEEP = 0.9


def calibrate_threshold(scores: np.ndarray) -> float:
    """The confidence below which the model abstains: the (1 - IN_SCOPE_KEEP) quantile of
    out-of-fold confidences on the user's own (in-scope) examples."""
    return float(np.quantile(scores, 1 - IN_SCOPE_KEEP))
