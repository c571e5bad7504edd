"""Classification metrics in the shape `quickadapt evaluate --json` prints."""
from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np
from sklearn.metrics import f1_score, precision_recall_fscore_support


def classification_report(
    y_true: Sequence[str], y_pred: Sequence[str], *, oos_label: str | None = None,
    none_label: str | None = "__none__",
) -> dict:
    """accuracy, macro_f1, n, n_abstained, per_class, confusions; with `oos_label`, accuracy and macro F1 are
    over in-scope rows (None when every row is out of scope) and `oos_recall` is the share of
    out-of-scope rows the model answered with `none_label` (`oos_recall_ci95`, Wilson's, as the accuracy's).

    The classes are those of the test labels and of the predictions, as scikit-learn counts them:
    a class the model answers but the test set lacks has precision 0 and lowers the macro F1,
    rather than vanishing from it; its recall, over no rows, is None, as is the precision of a
    class never answered (its F1 is 0). An abstention (`none_label`) is no class: it only costs recall.
    `none_label=None` means the model did not abstain: every prediction is a class, even one
    named `__none__`, and none is counted as an abstention."""
    y_true = np.asarray(list(y_true), dtype=object)
    y_pred = np.asarray(list(y_pred), dtype=object)
    out: dict = {}
    oos_answers = None
    if oos_label is not None:
        oos = y_true == oos_label
        refused = is_abstention(y_pred[oos], none_label)
        out["oos_recall"] = float(np.mean(refused)) if oos.any() else None
        # as uncertain as the accuracy, and on fewer rows (100 out-of-scope beside 300): 86 % is 78-92 %
        out["oos_recall_ci95"] = accuracy_interval(int(refused.sum()), len(refused)) if oos.any() else None
        out["n_oos"] = int(oos.sum())
        oos_answers = y_pred[oos]
        y_true, y_pred = y_true[~oos], y_pred[~oos]
    if not len(y_true):  # every row out of scope: only the out-of-scope recall is defined
        out.update({"accuracy": None, "macro_f1": None, "n": 0, "n_abstained": 0,
                    "per_class": with_oos_answered({}, oos_answers, none_label), "confusions": []})
        return out
    abstained = is_abstention(y_pred, none_label)
    labels = sorted(set(y_true.tolist()) | set(y_pred[~abstained].tolist()))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    answered = Counter(y_pred.tolist())
    out.update(
        {
            "accuracy": float(np.mean(y_true == y_pred)),
            "accuracy_ci95": accuracy_interval(int(np.sum(y_true == y_pred)), len(y_true)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
            "n": int(len(y_true)),
            "n_abstained": int(abstained.sum()),
            "per_class": with_oos_answered({
                # recall over no test rows is undefined: None, not scikit-learn's zero_division 0; so is
                # the precision of a class never answered (every one of its rows abstained on, or taken
                # for another), whose 0 read as every answer wrong beside classes at 1.0 (F1 stays 0)
                lab: {"precision": float(p[i]) if answered[lab] else None, "recall": float(r[i]) if s[i] else None,
                      "f1": float(f[i]), "support": int(s[i])}
                for i, lab in enumerate(labels)
            }, oos_answers, none_label),
            "confusions": confusions(y_true[~abstained], y_pred[~abstained]),
        }
    )
    return out


def confusions(y_true: np.ndarray, y_pred: np.ndarray) -> list[dict]:
    """Each (true class, class answered instead) pair and how many rows it took, the most first (then
    by name): the classes a chatbot mixes up, which per-class F1 does not pair. The off-diagonal
    cells of the confusion matrix, over the rows given (evaluate: in-scope rows answered)."""
    wrong = y_true != y_pred
    counted = Counter(zip(y_true[wrong].tolist(), y_pred[wrong].tolist()))
    return [{"label": t, "predicted": p, "count": n}
            for (t, p), n in sorted(counted.items(), key=lambda pair_n: (-pair_n[1], pair_n[0]))]


def top_k_accuracy(y_true: Sequence[str], top_labels: np.ndarray, *, oos_label: str | None = None) -> float | None:
    """The share of rows whose class is among their `top_labels` (one row per input: its most
    probable classes), over in-scope rows as accuracy is (None when there are none). Abstaining
    does not enter: the ranking is the classes' whatever was answered, so this is how often a
    "did you mean" offering them names the right one."""
    y_true = np.asarray(list(y_true), dtype=object)
    in_scope = y_true != oos_label if oos_label is not None else np.ones(len(y_true), dtype=bool)
    if not in_scope.any():
        return None
    return float(np.mean((np.asarray(top_labels, dtype=object)[in_scope] == y_true[in_scope][:, None]).any(1)))


def accuracy_interval(right: int, n: int) -> list[float]:
    """Wilson's 95 % interval for an accuracy (or out-of-scope recall) of `right` of `n` rows: 2 of
    3 right is anywhere from 21 % to 94 %, which the 66.7 % alone does not say. Wilson's rather than the normal
    approximation, whose interval leaves [0, 1] and is empty at 0 or n right."""
    from scipy.stats import binomtest

    ci = binomtest(right, n).proportion_ci(confidence_level=0.95, method="wilson")
    return [float(ci.low), float(ci.high)]


def is_abstention(y_pred: np.ndarray, none_label: str | None) -> np.ndarray:
    """Which predictions are abstentions: none when the model did not abstain (`none_label`
    None), so a class that happens to be named `__none__` is scored as any other."""
    if none_label is None:
        return np.zeros(len(y_pred), dtype=bool)
    return np.asarray(y_pred == none_label, dtype=bool)


def with_oos_answered(per_class: dict, oos_answers: np.ndarray | None, none_label: str | None) -> dict:
    """`per_class` with each class's `oos_answered`: how many out-of-scope rows the model answered
    with it (none without out-of-scope rows marked). Precision stays over in-scope rows, as the
    CLINC protocol scores them, so a class that swallows out-of-scope questions looks precise
    there (0.964 while 16 of 60 out-of-scope rows were answered with it): this count says so. A
    class answered only on out-of-scope rows joins with support 0 and no precision, recall or F1
    (None), outside the macro F1, which stays over in-scope rows."""
    if oos_answers is None:
        return per_class
    names, counts = np.unique(oos_answers[~is_abstention(oos_answers, none_label)].astype(str), return_counts=True)
    answered = dict(zip(names.tolist(), counts.tolist()))
    out = {lab: {**m, "oos_answered": int(answered.get(lab, 0))} for lab, m in per_class.items()}
    for lab in sorted(set(answered) - set(out)):
        out[lab] = {"precision": None, "recall": None, "f1": None, "support": 0, "oos_answered": int(answered[lab])}
    return dict(sorted(out.items()))
