"""Label-free model selection: which of several adapted models (methods, settings, training
steps) is best on the target, without target labels?

- `dev_risk`: deep embedded validation (You et al. 2019). Held-out source examples' losses,
  weighted by the density ratio p_target / p_source estimated by a domain classifier on the
  model's own features, with the control variate that cuts its variance. Lower is better.
  Like every importance-weighted estimate it sees only where the domains overlap: when the
  target lies outside the source's support (all weights at their floor, `dev_weight_mean` near
  0.1) it is the held-out source loss, blind to target errors; `adapt_domain` adds a collapse
  check for that case.
- `iwv_risk`: importance-weighted validation (Sugiyama et al. 2007): the same weighted loss, no
  control variate, weights from the input space (raw feature vectors; the encoder's features for
  text and images).
- `entropy`: mean prediction entropy on the target (lower = more confident).
- `im`: information maximisation (Shi & Sha 2012; Liang et al. 2020): entropy of the mean
  target prediction minus the mean entropy; high for confident and diverse predictions, near 0
  for a model that puts every target example in one class. Higher is better.
- `snd`: soft neighbourhood density (Saito et al. 2021): entropy of each target example's
  softmax-similarity over its neighbours in prediction space. Higher is better.

`Validator(source_val, target)` computes all of them for a model; calling it returns the one
criterion used for selection, oriented so lower is better."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from quickadapt.data.dataset import Dataset
from quickadapt.model import MAIN_TASK, AdaptedModel
from quickadapt.transfer.base import encode_labels

CRITERIA = ("dev", "iwv", "entropy", "snd", "im")
MAX_TARGET = 2000  # target examples the validators read (a seeded subsample beyond that)


def domain_probabilities(xs: np.ndarray, xt: np.ndarray, *, C: float = 0.1, seed: int = 0, folds: int = 3) -> np.ndarray:
    """Out-of-fold p(target | x) for every row of xs then xt, from a standardised logistic
    domain classifier (so no example is scored by a classifier that saw it)."""
    x = np.concatenate([xs, xt]).astype(np.float64)
    d = np.r_[np.zeros(len(xs)), np.ones(len(xt))]
    p = np.zeros(len(x))
    folds = max(2, min(folds, len(xs), len(xt)))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, d):
        scaler = StandardScaler().fit(x[train])
        clf = LogisticRegression(C=C, max_iter=1000).fit(scaler.transform(x[train]), d[train])
        p[test] = clf.predict_proba(scaler.transform(x[test]))[:, 1]
    return p


def density_ratio(
    xs: np.ndarray, xt: np.ndarray, *, C: float = 0.1, seed: int = 0, max_weight: float = 10.0, normalise: bool = True,
) -> np.ndarray:
    """w(x) = p_target(x) / p_source(x) for each source row, clipped to [1/max_weight,
    max_weight], and normalised to mean 1 unless `normalise=False` (DEV's control variate needs
    the raw ratios, whose mean is only about 1)."""
    p = np.clip(domain_probabilities(xs, xt, C=C, seed=seed)[: len(xs)], 1e-6, 1 - 1e-6)
    w = p / (1 - p) * len(xs) / len(xt)
    w = np.clip(w, 1.0 / max_weight, max_weight)
    return w / w.mean() if normalise else w


def dev_risk(losses: np.ndarray, weights: np.ndarray) -> float:
    """Deep embedded validation: weighted mean loss with the control variate eta (You et al. 2019)."""
    return float(np.mean(dev_terms(losses, weights)))


def dev_terms(losses: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each held-out source example's share of the DEV risk (their mean is `dev_risk`): w*l + eta*(w - 1)."""
    wl = weights * losses
    var = np.var(weights, ddof=1) if len(weights) > 1 else 0.0
    # weights without spread (all at the clip floor: domains that do not overlap) make eta a ratio
    # of rounding errors; then there is nothing to correct with
    spread = var > 1e-4 * max(float(np.mean(weights)) ** 2, 1e-12)
    eta = -np.cov(np.stack([wl, weights]))[0, 1] / var if spread else 0.0
    return wl + eta * (weights - 1.0)


def dev_pseudo_values(losses: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The DEV risk's jackknife pseudo-values, n*R - (n - 1)*R(without example i): paired between
    two models, their spread is the noise of the difference of their risks. dev_terms' spread is
    not: eta is fitted to the same examples, and with all but a few weights at the clip floor
    (domains that barely overlap) it rests on those few while eta * (w - 1) shifts every term alike;
    coral after 50 steps on digits, its eta fitted to the one weight of 180 off the floor, read
    "WORSE than source-only (9133.2 standard errors)"; by the jackknife, 1.0: within its noise."""
    n = len(losses)
    if n < 3:
        return dev_terms(losses, weights)
    full = dev_risk(losses, weights)
    keep = ~np.eye(n, dtype=bool)
    without = np.array([dev_risk(losses[k], weights[k]) for k in keep])
    return n * full - (n - 1) * without


def iwv_risk(losses: np.ndarray, weights: np.ndarray) -> float:
    return float(np.mean(iwv_terms(losses, weights)))


def iwv_terms(losses: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each held-out source example's share of the importance-weighted risk (their mean is `iwv_risk`)."""
    return weights * losses


def entropy_score(proba: np.ndarray) -> float:
    return float(np.mean(-(proba * np.log(proba + 1e-12)).sum(1)))


def class_entropy(proba: np.ndarray) -> float:
    """Entropy of the mean prediction: how spread the predicted classes are (0 = one class)."""
    return entropy_score(proba.mean(0, keepdims=True))


def im_score(proba: np.ndarray) -> float:
    return class_entropy(proba) - entropy_score(proba)


def snd_score(proba: np.ndarray, temperature: float = 0.05) -> float:
    """Soft neighbourhood density of target predictions (higher is better)."""
    p = torch.as_tensor(proba, dtype=torch.float32)
    p = torch.nn.functional.normalize(p, dim=1)
    sim = p @ p.T / temperature
    sim.fill_diagonal_(-float("inf"))
    q = torch.softmax(sim, dim=1)
    return float(-(q * torch.log(q + 1e-12)).sum(1).mean())


def split_source(source: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """(train, held-out validation) split of the labelled source, stratified, seeded."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(source))
    try:
        train, val = train_test_split(idx, test_size=fraction, random_state=seed, stratify=source.labels)
    except ValueError:  # a class with one example, or fewer held-out examples than classes:
        # keep one example of every class for training, hold out from the rest
        order = np.random.default_rng(seed).permutation(len(source))
        keep = set({label: i for i, label in reversed(list(zip(order, source.labels[order])))}.values())
        rest = [i for i in order if i not in keep]
        # two at least: the domain classifier behind DEV and IWV scores each held-out example
        # out of fold, and one alone leaves a fold with no source (a traceback at 5-7 examples)
        n_val = min(len(rest), max(2, round(fraction * len(source))))
        if n_val < 2:
            from quickadapt.errors import BadInput

            raise BadInput(f"{source.name or 'source'}: keeping one example of every class for training leaves "
                           f"{n_val} to validate on, and validation needs 2; add examples")
        val, train = np.asarray(rest[:n_val]), np.asarray(sorted(keep) + rest[n_val:])
    return source.subset(np.sort(train)), source.subset(np.sort(val))


class Validator:
    """Label-free scores of a model from held-out labelled source data and the unlabelled target."""

    def __init__(self, source_val: Dataset, target: Dataset, *, criterion: str = "dev", seed: int = 0):
        if criterion not in CRITERIA:
            from quickadapt.errors import BadInput

            raise BadInput(f"unknown validation criterion {criterion!r}: choose one of {', '.join(CRITERIA)}")
        self.source_val = source_val
        if len(target) > MAX_TARGET:
            rng = np.random.default_rng(seed)
            target = target.subset(np.sort(rng.choice(len(target), MAX_TARGET, replace=False)))
        self.target = target
        self.criterion = criterion
        self.seed = seed
        self._input_weights = None

    def _input_space_weights(self, model: AdaptedModel) -> np.ndarray:
        """IWV's weights: from the raw values of feature vectors, or from the encoder's features
        for text and images (a frozen pretrained encoder's are the same for every model, so
        they are computed once; a trained encoder's are its own)."""
        fixed = self.source_val.modality == "features" or not model.encoder_tuned
        if fixed and self._input_weights is not None:
            return self._input_weights
        if self.source_val.modality == "features":
            xs, xt = np.asarray(self.source_val.inputs), np.asarray(self.target.inputs)
        else:
            xs, xt = model.features(self.source_val.inputs), model.features(self.target.inputs)
        weights = density_ratio(xs, xt, seed=self.seed)
        if fixed:
            self._input_weights = weights
        return weights

    def scores(self, model: AdaptedModel) -> dict:
        # every checkpoint of a training run is scored here: no jackknife, which only the lead reads
        return self.scores_and_terms(model, jackknife=False)[0]

    def scores_and_terms(self, model: AdaptedModel, jackknife: bool = True) -> tuple[dict, dict[str, np.ndarray]]:
        """`scores`, and per held-out source example the terms whose mean is the `dev` and `iwv`
        criteria: two models' terms on the same examples, paired, say whether their difference
        exceeds its noise (bench/domain_auto_rule.py); with `jackknife`, also DEV's pseudo-values,
        whose paired spread is that noise for DEV (dev_pseudo_values: n refits of eta, 0.17 s at
        3,000 held-out examples)."""
        from quickadapt.domain.base import representation

        zs, ps = representation(model, self.source_val.inputs)
        zt, pt = representation(model, self.target.inputs)
        _, y = encode_labels(self.source_val.labels, model.classes[MAIN_TASK])
        losses = -np.log(np.clip(ps[np.arange(len(y)), y], 1e-12, None))
        w_dev = density_ratio(zs, zt, seed=self.seed, normalise=False)
        w_in = self._input_space_weights(model)
        terms = {"dev": dev_terms(losses, w_dev), "iwv": iwv_terms(losses, w_in)}
        if jackknife:  # what the lead's noise is read from
            terms["dev_jackknife"] = dev_pseudo_values(losses, w_dev)
        return {
            "source_val_accuracy": float(np.mean(ps.argmax(1) == y)),
            "dev_risk": float(np.mean(terms["dev"])),
            # about 1 when the domains overlap in the model's features; near 1 / max_weight (0.1)
            # when they do not, and then DEV can only report the held-out source loss
            "dev_weight_mean": float(np.mean(w_dev)),
            "iwv_risk": float(np.mean(terms["iwv"])),
            "target_entropy": entropy_score(pt),
            "target_class_entropy": class_entropy(pt),
            "im": im_score(pt),
            "snd": snd_score(pt),
        }, terms

    @staticmethod
    def criterion_value(scores: dict, criterion: str) -> float:
        """The selection value, lower is better."""
        return {
            "dev": scores["dev_risk"], "iwv": scores["iwv_risk"],
            "entropy": scores["target_entropy"], "snd": -scores["snd"], "im": -scores["im"],
        }[criterion]

    def __call__(self, model: AdaptedModel) -> float:
        return self.criterion_value(self.scores(model), self.criterion)


__all__ = [
    "CRITERIA", "Validator", "density_ratio", "domain_probabilities", "dev_pseudo_values", "dev_risk", "dev_terms", "iwv_risk", "iwv_terms",
    "entropy_score", "class_entropy", "im_score", "snd_score", "split_source",
]
