"""Classification metrics in the shape `quickadapt evaluate --json` prints."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import f1_score, precision_recall_fscore_support


def classification_report(
    y_true: Sequence[str], y_pred: Sequence[str], *, oos_label: str | None = None, none_label: str = "__none__"
) -> dict:
    """accuracy, macro_f1, n, n_abstained, per_class; with `oos_label`, accuracy and macro F1 are
    over in-scope rows (None when every row is out of scope) and `oos_recall` is the share of
    out-of-scope rows the model answered with `none_label`.

    The classes are those of the test labels and of the predictions, as scikit-learn counts them:
    a class the model answers but the test set lacks has precision 0 and lowers the macro F1,
    rather than vanishing from it. An abstention (`none_label`) is no class: it only costs recall."""
    y_true = np.asarray(list(y_true), dtype=object)
    y_pred = np.asarray(list(y_pred), dtype=object)
    out: dict = {}
    if oos_label is not None:
        oos = y_true == oos_label
        out["oos_recall"] = float(np.mean(y_pred[oos] == none_label)) if oos.any() else None
        out["n_oos"] = int(oos.sum())
        y_true, y_pred = y_true[~oos], y_pred[~oos]
    if not len(y_true):  # every row out of scope: only the out-of-scope recall is defined
        out.update({"accuracy": None, "macro_f1": None, "n": 0, "n_abstained": 0, "per_class": {}})
        return out
    labels = sorted((set(y_true.tolist()) | set(y_pred.tolist())) - {none_label})
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    out.update(
        {
            "accuracy": float(np.mean(y_true == y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
            "n": int(len(y_true)),
            "n_abstained": int(np.sum(y_pred == none_label)),
            "per_class": {
                lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                for i, lab in enumerate(labels)
            },
        }
    )
    return out
