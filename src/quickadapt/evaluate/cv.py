"""Out-of-fold predictions on the user's own few examples: the accuracy estimate a fit reports,
and the confidences the abstain threshold is calibrated on."""
from __future__ import annotations

from typing import Callable

import numpy as np
from sklearn.model_selection import StratifiedKFold

from quickadapt.data.dataset import Dataset, example_key
from quickadapt.progress import log, progress_bar


def distinct_examples(data: Dataset, read_alike: dict[int, bytes] | None = None) -> np.ndarray:
    """Each example numbered in order of first appearance, copies alike: the same text (capitals
    and spacing aside: `example_key`), image or feature row with the same label. An input seen under two or more labels is not a copy but
    an input that recurs (a few discrete features, noisy labels): each of its rows counts on its
    own, as new rows with it will come. (Grouped by input and label, such rows were held out
    against training rows of the same input under the other labels: 23 % estimated, 77.5 % real.)
    `read_alike`: the encoder's keys for inputs it reads as one though they differ (`Encoder.read_alike`:
    long texts alike up to where they are cut), which replace theirs."""
    keys = [example_key(x, data.modality) for x in data.inputs]
    for i, key in (read_alike or {}).items():
        keys[i] = key
    labels_of: dict[bytes, set] = {}
    for k, y in zip(keys, data.labels):
        labels_of.setdefault(k, set()).add(y)
    first: dict = {}
    return np.array([first.setdefault(k if len(labels_of[k]) == 1 else (k, i), len(first))
                     for i, k in enumerate(keys)], dtype=int)


def _representatives(data: Dataset, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(each example's distinct-example number, the first copy of each). `ids`: `distinct_examples`
    of `data` when the caller has them; computing them hashes every input (an image's whole file)."""
    ids = distinct_examples(data) if ids is None else ids
    return ids, np.unique(ids, return_index=True)[1]


def n_folds(data: Dataset, n_splits: int, ids: np.ndarray | None = None) -> int:
    """How many folds `folds` makes of `n_splits` asked for: no more than the smallest scored
    class has distinct examples, since each fold holds out one or more of every class (0: no folds)."""
    _, reps = _representatives(data, ids)
    return _fold_count(data.labels[reps], n_splits)


def _fold_count(labels: np.ndarray, n_splits: int) -> int:
    """`n_folds` from the distinct examples' labels."""
    counts = np.unique(labels, return_counts=True)[1]
    several = counts[counts >= 2]
    return min(n_splits, int(several.min())) if len(several) >= 2 and n_splits >= 2 else 0


def folds(data: Dataset, n_splits: int, seed: int, ids: np.ndarray | None = None):
    """(scored indices, [(training indices, held-out positions in scored), ...]) for stratified
    cross-validation over the examples of every class that has two or more; None when fewer
    than two classes have two. A class with a single example is never held out (its fold would
    test a class the training never saw): that example joins every training fold, unscored.

    Copies of one example are held out together: a fold that trained on a text's twin would score
    it as if it were new (three copies of every row raised the estimate from 90 to 98 %, and the
    abstain threshold with it). Classes and folds count distinct examples; without copies this is
    plain stratified k-fold over the examples."""
    ids, reps = _representatives(data, ids)
    if len(reps) < len(data):
        log(f"note: {len(data) - len(reps)} examples repeat an earlier one (same input, same label); "
            "cross-validation holds out each with its copies and counts them once")
    labels = data.labels[reps]
    names, counts = np.unique(labels, return_counts=True)
    several = names[counts >= 2]
    if len(several) < 2:
        return None
    in_folds = np.isin(labels, several)
    scored_reps, always_reps = np.flatnonzero(in_folds), np.flatnonzero(~in_folds)
    scored = np.flatnonzero(np.isin(ids, scored_reps))
    always = np.flatnonzero(np.isin(ids, always_reps))
    splitter = StratifiedKFold(n_splits=_fold_count(labels, n_splits), shuffle=True, random_state=seed)
    pairs = []
    for train_pos, test_pos in splitter.split(np.zeros(len(scored_reps)), labels[scored_reps]):
        held_out = np.isin(ids[scored], scored_reps[test_pos])
        pairs.append((np.sort(np.concatenate([scored[~held_out], always])), np.flatnonzero(held_out)))
    return scored, pairs


def out_of_fold(data: Dataset, fit: Callable[[Dataset], object], n_splits: int, seed: int,
                progress: str | None = None, ids: np.ndarray | None = None):
    """(scored indices, predicted labels, top scores) for the examples `folds` scores, each from
    a model that never saw it; None when there are no folds. `fit(train) -> model` with
    `model.predict(inputs) -> (labels, scores)`. `progress` describes a bar over the folds: the
    folds' own fits are silent, and five fine-tuning fits can take many minutes."""
    split = folds(data, n_splits, seed, ids)
    if split is None:
        return None
    scored, pairs = split
    pred = np.empty(len(scored), dtype=object)
    score = np.zeros(len(scored))
    with progress_bar(progress, total=len(pairs)) as advance:
        for train_idx, test_pos in pairs:
            model = fit(data.subset(train_idx))
            labels, scores = model.predict(data.subset(scored[test_pos]).inputs)
            pred[test_pos] = labels
            score[test_pos] = scores
            advance(1)
    return scored, pred, score


SIGNIFICANCE = 0.05  # below this p-value a lead on held-out examples is more than noise


def mcnemar_p(right: np.ndarray, other_right: np.ndarray) -> float:
    """McNemar's exact one-sided p-value that a model (`right`: which held-out examples it gets
    right) beats another on the same examples, from those only one of the two gets right: with a
    few dozen examples a lead of one or two is noise, which raw accuracies do not say."""
    from scipy.stats import binomtest

    only, only_other = discordant(right, other_right)
    return float(binomtest(only, only + only_other, alternative="greater").pvalue) if only else 1.0


def discordant(right: np.ndarray, other_right: np.ndarray) -> tuple[int, int]:
    """How many examples only the first model gets right, and how many only the other: all McNemar reads."""
    return int(np.sum(right & ~other_right)), int(np.sum(other_right & ~right))


def mcnemar_two_sided_p(right: np.ndarray, other_right: np.ndarray) -> float:
    """McNemar's exact two-sided p-value that two models differ on the same examples, where either
    may turn out the better (evaluate --against): calling the difference real wherever one of the
    two one-sided `mcnemar_p` fell below SIGNIFICANCE did so at twice that rate when the two are
    alike (9 rows right for one only, 2 for the other: one-sided 0.033, "better"; two-sided 0.065)."""
    from scipy.stats import binomtest

    only, only_other = discordant(right, other_right)
    return float(binomtest(only, only + only_other).pvalue) if only + only_other else 1.0


def paired_lead_se(reference: np.ndarray, other: np.ndarray, noise: tuple | None = None) -> float | None:
    """How far `other`'s per-example risk lies below `reference`'s on the same examples, in
    standard errors of their paired difference (positive: `other` looks better); None without
    spread. Below about 2 the lead is the estimate's noise: domain adaptation's label-free
    verdict against source-only (A->W at one seed: -0.2 to +1.2), which "looks better" alone did
    not say, and `--strategy auto`'s out-of-fold errors (select/strategy.py)."""
    diff = np.asarray(reference, dtype=float) - np.asarray(other, dtype=float)
    # `noise`: the two models' per-example values whose paired spread is the lead's noise, where
    # the terms' own is not (DEV's jackknife pseudo-values, domain/validate.dev_pseudo_values)
    spread = diff if noise is None else np.asarray(noise[0], dtype=float) - np.asarray(noise[1], dtype=float)
    se = float(np.std(spread, ddof=1)) / np.sqrt(len(spread)) if len(spread) > 1 else 0.0
    return round(float(np.mean(diff)) / float(se), 2) if se > 0 else None


def one_per_example(ids: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """Positions in `scored` of the first row of each distinct example it holds. Copies are held
    out together and read as one input, so their out-of-fold predictions are the same: counted
    row by row they carry no new evidence, yet weigh an accuracy and a McNemar test as if they
    did (50 digits written 3 times each: p = 0.039 against 0.23 for the same 50 rows once).
    Without copies: every position, in order, so every figure is as it was. `ids`: the data's
    `distinct_examples`."""
    first = np.unique(ids[scored], return_index=True)[1]
    return np.sort(first)


def n_distinct(ids: np.ndarray) -> int:
    """How many distinct examples the `distinct_examples` numbers `ids` count."""
    return int(ids.max()) + 1 if len(ids) else 0


def oof_accuracy(data: Dataset, oof, ids: np.ndarray | None = None) -> float:
    """Accuracy of `out_of_fold`'s predictions on the distinct examples it scored, each once."""
    scored, pred, _ = oof
    keep = one_per_example(distinct_examples(data) if ids is None else ids, scored)
    return float(np.mean(pred[keep] == data.labels[scored[keep]]))


def oof_disagreements(data: Dataset, oof, ids: np.ndarray | None = None) -> list[dict]:
    """The distinct scored examples whose out-of-fold prediction is another class than their
    label, the most confident first: where a model that never saw an example is sure it is
    something else, the label is the likeliest one to be wrong (three of 100 CLINC utterances
    given another intent's label were the three most confident of the four disagreements). Each
    is `row` (1-based, in the order read, as "data row N" elsewhere), `label`, `predicted`, `score`."""
    scored, pred, score = oof
    keep = one_per_example(distinct_examples(data) if ids is None else ids, scored)
    wrong = keep[pred[keep] != data.labels[scored[keep]]]
    wrong = wrong[np.argsort(-score[wrong], kind="stable")]
    return [{"row": int(scored[k]) + 1, "label": str(data.labels[scored[k]]), "predicted": str(pred[k]),
             "score": float(score[k])} for k in wrong]


IMBALANCE = 3  # classes whose sizes differ more than this many times are reported class by class too


def class_sizes_differ(labels: np.ndarray) -> bool:
    """Whether the classes in `labels` (one per distinct scored example) differ in size by more
    than IMBALANCE: there a plain accuracy is mostly the big classes' (two intents of 100
    examples beside one of 2: 99.5 % out of fold, 69.2 % on a test set with 30 of each)."""
    counts = np.unique(labels, return_counts=True)[1]
    return len(counts) > 0 and counts.max() > IMBALANCE * counts.min()


def balanced_accuracy(truth: np.ndarray, pred: np.ndarray) -> float:
    """The mean over the classes in `truth` of each one's recall: every class counts alike,
    however many examples it has. (scikit-learn's own warns when a prediction names a class
    that was never scored, a class with one example: it still counts as wrong here.)
    Counted in one pass over the rows: a pass over them for each class took 11.9 s at 10,000
    classes of 2 to 5 examples (35,000 rows), 0.04 s so."""
    _, which = np.unique(truth, return_inverse=True)
    return float(np.mean(np.bincount(which, weights=pred == truth) / np.bincount(which)))


def oof_balanced_accuracy(data: Dataset, oof, ids: np.ndarray | None = None) -> float:
    """`balanced_accuracy` of `out_of_fold`'s predictions on the distinct examples it scored, each once."""
    scored, pred, _ = oof
    keep = one_per_example(distinct_examples(data) if ids is None else ids, scored)
    return balanced_accuracy(data.labels[scored[keep]], pred[keep])


# share of in-scope examples that should keep their answer when abstaining is on
IN_SCOPE_KEEP = 0.9


def calibrate_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The confidence below which the model abstains: the (1 - IN_SCOPE_KEEP) quantile of
    out-of-fold confidences on the user's own (in-scope) examples (`labels`: their classes), each
    class weighing alike. A plain quantile is the big classes' own: beside two intents of 100
    examples, one of 2 had its every test answer withheld. With classes of one size this is
    exactly np.quantile, so the thresholds of balanced benchmarks (CLINC's K-shot) stay as they were."""
    weights = class_balanced_weights(labels)
    if np.all(weights == 1):
        return float(np.quantile(scores, 1 - IN_SCOPE_KEEP))
    return weighted_quantile(np.asarray(scores, dtype=float), weights, 1 - IN_SCOPE_KEEP)


def class_balanced_weights(labels: np.ndarray) -> np.ndarray:
    """Each example's weight, inversely proportional to its class's size, so that every class
    weighs alike (scikit-learn's class_weight="balanced"); scaled so that the largest class's
    examples weigh 1 each, as in a plain quantile, and the rest more (1 everywhere when the
    classes are of one size)."""
    _, which, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return counts.max() / counts[which]


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The `q` quantile of `values` as np.quantile (its default, linear interpolation) gives it
    for each value written `weights` times, without writing them out; the weights, 1 or more,
    need not be whole numbers."""
    order = np.argsort(values, kind="stable")
    ordered, ends = values[order], np.cumsum(weights[order])  # value k fills positions [ends[k-1], ends[k])
    position = (ends[-1] - 1) * q
    below = np.floor(position)

    def at(pos: float) -> float:
        return ordered[min(int(np.searchsorted(ends, pos, side="right")), len(ordered) - 1)]

    low, high = at(below), at(below + 1)
    return float(low + (position - below) * (high - low))
