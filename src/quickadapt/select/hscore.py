"""H-score (Bao et al. 2019, "An Information-Theoretic Approach to Transferability in Task
Transfer Learning"), shrinkage-regularised as Ibrahim et al. 2022 ("Newer is not always better:
rethinking transferability metrics, their peculiarities, stability and performance") propose:

    H = tr( cov_alpha(f)^-1 (1 - alpha) cov(E[f | y]) )

cov(E[f | y]) is the covariance of each example's class mean (between-class scatter), cov(f) the
features' covariance. With few examples per class cov(f) is singular (n < d) and the plain
H-score's pseudo-inverse blows up along directions a handful of points happen to span;
Ledoit-Wolf shrinkage (weight alpha towards a scaled identity, scikit-learn's estimate) keeps it
invertible, and (1 - alpha) shrinks the between-class part alike. Higher is better: the classes
lie further apart relative to the features' spread. It lies between 0 and the number of classes
less one (fewer where d is smaller) and does not change with the features' scale. The
between-class covariance is taken over n, as Ledoit-Wolf's is (Transfer-Learning-Library's
`regularized_h_score` divides it by n - 1: its figures are n / (n - 1) times these)."""
from __future__ import annotations

import numpy as np

from quickadapt.select.base import checked, transferability_score


@transferability_score("hscore")
def hscore(features, labels) -> float:
    """Shrinkage-regularised H-score of `features` (n, d) for `labels`; higher is better."""
    from sklearn.covariance import LedoitWolf

    f, codes = checked(features, labels)
    f = f - f.mean(axis=0)  # Ledoit-Wolf's shrinkage target assumes centred features
    shrunk = LedoitWolf(assume_centered=False).fit(f)
    alpha = shrunk.shrinkage_
    class_means = np.zeros_like(f)
    for c in range(codes.max() + 1):
        class_means[codes == c] = f[codes == c].mean(axis=0)
    between = np.cov(class_means, rowvar=False, bias=True).reshape(f.shape[1], f.shape[1])
    return float(np.trace(np.linalg.pinv(shrunk.covariance_, rcond=1e-15) @ ((1 - alpha) * between)))
