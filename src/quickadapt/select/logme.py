"""LogME (You et al. 2021, "LogME: Practical Assessment of Pre-trained Models for Transfer
Learning", ICML; the fixed-point form of their TPAMI version).

For each class c, a Bayesian linear regression from the features to the 0/1 indicator of c,
with weights w ~ N(0, 1/alpha) and noise N(0, 1/beta): the log of the evidence p(y_c | F),
maximised over alpha and beta, divided by n (per example). LogME is the mean over classes.
One SVD of F serves every class and every step of the fixed-point updates (MacKay's):
    gamma = sum_i beta s_i / (alpha + beta s_i),  alpha = gamma / |m|^2,  beta = (n - gamma) / |y - F m|^2
with s_i the eigenvalues of F^T F and m the posterior mean of w. Higher is better: the labels
are more nearly a linear function of the features. The maximum evidence does not change when
the features are scaled or rotated (the prior is isotropic and its width is maximised over)."""
from __future__ import annotations

import numpy as np

from quickadapt.select.base import checked, one_hot, transferability_score

MAX_STEPS = 100
TOLERANCE = 1e-7  # relative change of alpha / beta that ends the updates (the reference code stops at 1e-2)
EPS = 1e-12


@transferability_score("logme")
def logme(features, labels) -> float:
    """Mean over classes of the per-example log maximum evidence of a linear model from
    `features` (n, d) to each class's indicator; higher is better."""
    f, codes = checked(features, labels)
    n, d = f.shape
    # F = U diag(sqrt(s)) V^T: y's coordinates along U are all the updates need
    u, singular, _ = np.linalg.svd(f, full_matrices=False)
    s = singular ** 2
    y = one_hot(codes)
    evidences = [_evidence(u.T @ y[:, c], float(y[:, c] @ y[:, c]), s, n, d) for c in range(y.shape[1])]
    return float(np.mean(evidences))


def _evidence(x: np.ndarray, y_norm2: float, s: np.ndarray, n: int, d: int) -> float:
    """The log maximum evidence per example for one target whose projections on F's left
    singular vectors are `x` and whose squared length is `y_norm2` (its part outside F's column
    space is residual whatever w is)."""
    if not (s > 0).any():
        # all-zero features: F m = 0 whatever w is, so alpha drops out of the evidence (any value
        # maximises it) and beta's maximum is n / |y|^2; the updates would divide 0 by 0 (NaN)
        return float(0.5 * np.log(n / y_norm2) - 0.5 - 0.5 * np.log(2 * np.pi))
    x2 = x ** 2
    outside = max(y_norm2 - x2.sum(), 0.0)
    alpha, beta = 1.0, 1.0
    for _ in range(MAX_STEPS):
        t = alpha / beta
        gamma = (s / (s + t)).sum()
        m2 = (s * x2 / (s + t) ** 2).sum()  # |m|^2: m = V diag(sqrt(s) / (s + t)) x
        res2 = (x2 * (t / (s + t)) ** 2).sum() + outside  # |y - F m|^2
        alpha = gamma / (m2 + EPS)
        beta = max(n - gamma, EPS) / (res2 + EPS)
        if abs(alpha / beta - t) <= TOLERANCE * t:
            break
    t = alpha / beta  # |m|^2 and the residual at the final alpha and beta
    m2 = (s * x2 / (s + t) ** 2).sum()
    res2 = (x2 * (t / (s + t)) ** 2).sum() + outside
    # the d - rank directions F does not reach have eigenvalue 0: log(alpha) each in log|A|
    log_det = np.log(alpha + beta * s).sum() + (d - len(s)) * np.log(alpha)
    evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - log_det / 2
                - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi))
    return float(evidence / n)
