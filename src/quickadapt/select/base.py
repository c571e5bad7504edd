"""What every transferability score shares: the registry and the checks on (features, labels).

A score reads a candidate's features of the user's labelled examples, or the probabilities its
source classifier gives them (`reads`), and says, higher is better, how well the candidate
should transfer to the task, without training on it."""
from __future__ import annotations

from typing import Callable

import numpy as np

from quickadapt.errors import BadInput
from quickadapt.registry import Registry

SCORES: Registry[Callable[..., float]] = Registry("transferability score")
READS = ("features", "source")  # a candidate's features, or its source classifier's probabilities


def transferability_score(name: str, *, reads: str = "features"):
    """Register `fn(array, labels) -> float` under `name`; `reads` says what the array is."""
    if reads not in READS:
        raise ValueError(f"reads must be one of {READS}, got {reads!r}")

    def decorator(fn):
        fn.reads = reads
        return SCORES.register(name)(fn)

    return decorator


def checked(values, labels, what: str = "features") -> tuple[np.ndarray, np.ndarray]:
    """(`values` as a finite float64 (n, d) array, `labels` as class codes 0..C-1), or BadInput
    naming what is wrong: a score of one class, or of numbers that are not numbers, means nothing."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise BadInput(f"{what} must be a 2-D array (examples x dimensions) with at least one row and column, "
                       f"got shape {x.shape}")
    if not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise BadInput(f"{what} of example {bad} (from 0) are not finite numbers (NaN or inf)")
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != len(x):
        raise BadInput(f"labels must be one per example: got {y.shape} labels for {len(x)} examples")
    codes = label_codes(y, "label")
    classes = np.unique(codes)
    if len(classes) < 2:
        raise BadInput(f"labels hold {len(classes)} class; a transferability score compares at least 2")
    return x, codes


def label_codes(labels: np.ndarray, what: str) -> np.ndarray:
    """1-D `labels` as codes 0..K-1, or BadInput where one is missing (None or NaN): np.unique
    would make the NaNs one more class, silently, and a None among strings fail to sort."""
    missing = np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in labels.tolist()], dtype=bool)
    if missing.any():
        raise BadInput(f"{what} of example {int(np.flatnonzero(missing)[0])} (from 0) is missing (NaN or None); "
                       f"every example needs one")
    return np.unique(labels.astype(str) if labels.dtype == object else labels, return_inverse=True)[1].reshape(-1)


def one_hot(codes: np.ndarray) -> np.ndarray:
    return np.eye(int(codes.max()) + 1)[codes]
