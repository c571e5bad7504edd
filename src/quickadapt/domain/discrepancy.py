"""How far apart two feature sets are: a domain classifier's held-out accuracy (0.5 = the
domains cannot be told apart) and the squared MMD with a Gaussian kernel at the median distance
(both invariant to the overall scale of the features, so different models compare)."""
from __future__ import annotations

import numpy as np
import torch


def domain_accuracy(xs: np.ndarray, xt: np.ndarray, *, seed: int = 0) -> float:
    """Balanced out-of-fold accuracy of a logistic classifier telling source from target."""
    from quickadapt.domain.validate import domain_probabilities

    p = domain_probabilities(xs, xt, C=1.0, seed=seed)
    return float(0.5 * (np.mean(p[: len(xs)] < 0.5) + np.mean(p[len(xs):] >= 0.5)))


def gaussian_mmd2(xs: np.ndarray, xt: np.ndarray) -> float:
    x = torch.as_tensor(np.concatenate([xs, xt]), dtype=torch.float64)
    d2 = torch.cdist(x, x).pow(2)
    bandwidth = d2[d2 > 0].median()
    k = torch.exp(-d2 / bandwidth)
    n = len(xs)
    return float(k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean())
