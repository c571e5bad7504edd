"""LEEP (Nguyen et al. 2020, "LEEP: A New Measure to Evaluate Transferability of Learned
Representations", ICML), and N-LEEP (Li et al. 2021, "Ranking Neural Checkpoints", CVPR) for a
candidate with no source classifier.

theta(x) are the source classifier's probabilities over its Z source classes. From the user's
n labelled examples, the empirical joint P(y, z) = 1/n sum_i theta(x_i)_z [y_i = y] gives
P(y | z) = P(y, z) / P(z), a classifier of target labels built from the source one without any
training; LEEP is the mean log-likelihood it gives the true labels:

    LEEP = 1/n sum_i log sum_z P(y_i | z) theta(x_i)_z

It is at most 0 (source classes that name the target ones exactly) and at least minus the
entropy of the labels; neither the order of the source classes nor the names of the target
labels change it. N-LEEP stands a Gaussian mixture on the features in for the source
classifier: PCA keeping 80 % of the variance, then a mixture of as many diagonal Gaussians as
there are target classes (scikit-learn), whose posterior probabilities are theta."""
from __future__ import annotations

import numpy as np

from quickadapt.errors import BadInput
from quickadapt.select.base import checked, one_hot, transferability_score

PCA_VARIANCE = 0.8  # Li et al.'s share of the variance kept before the mixture


@transferability_score("leep", reads="source")
def leep(source_proba, labels) -> float:
    """LEEP of a source classifier's probabilities `source_proba` (n, Z; rows sum to 1) for the
    target `labels`; higher is better, at most 0."""
    theta, codes = checked(source_proba, labels, "source probabilities")
    if (theta < 0).any() or not np.allclose(theta.sum(axis=1), 1.0, atol=1e-4):
        raise BadInput("source probabilities must be non-negative rows summing to 1 (a classifier's softmax)")
    joint = one_hot(codes).T @ theta / len(theta)  # (C, Z): P(y, z)
    conditional = joint / np.maximum(joint.sum(axis=0, keepdims=True), 1e-300)  # P(y | z)
    likelihood = (theta @ conditional.T)[np.arange(len(codes)), codes]  # sum_z P(y_i | z) theta_iz
    return float(np.mean(np.log(np.maximum(likelihood, 1e-300))))


def gaussian_mixture_proba(features, n_components: int, *, seed: int = 0) -> np.ndarray:
    """N-LEEP's stand-in source classifier: the posterior probabilities (n, n_components) of a
    diagonal Gaussian mixture fit to the features' leading principal components (80 % of the
    variance), the features standardised first so no one dimension's scale decides."""
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    f = np.asarray(features, dtype=np.float64)
    f = (f - f.mean(axis=0)) / np.maximum(f.std(axis=0), 1e-12)
    if not f.any():
        # the same features for every example: one cluster, no source class tells any apart (PCA
        # and the mixture would warn of dividing by zero variance and of one distinct cluster)
        return np.full((len(f), min(n_components, len(f))), 1.0 / min(n_components, len(f)))
    reduced = PCA(n_components=PCA_VARIANCE, svd_solver="full", random_state=seed).fit_transform(f)
    mixture = GaussianMixture(n_components=min(n_components, len(f)), covariance_type="diag", reg_covar=1e-4,
                              random_state=seed, n_init=1).fit(reduced)
    return mixture.predict_proba(reduced)


def nleep(features, labels, *, seed: int = 0) -> float:
    """N-LEEP: LEEP with `gaussian_mixture_proba` of `features` as the source classifier."""
    f, codes = checked(features, labels)
    return leep(gaussian_mixture_proba(f, int(codes.max()) + 1, seed=seed), codes)
