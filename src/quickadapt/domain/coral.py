"""`coral`: correlation alignment. `mode=deep` (Deep CORAL, Sun & Saenko 2016) adds the distance
between source and target covariances of the class scores (the paper's fc8 outputs),
||C_s - C_t||_F^2 / (4 d^2), as a loss.
`mode=closed` (CORAL, Sun et al. 2016) is the closed form for fixed features: train source-only,
then whiten the source bottleneck features, re-colour them with the target covariance
(C_s^-1/2 then C_t^1/2, each regularised by +I) and refit the classifier on them; target
features are used as they are, so prediction is unchanged in form."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from quickadapt.domain.base import DeepConfig, DeepMethod, representation
from quickadapt.heads import LogisticHead
from quickadapt.model import MAIN_TASK
from quickadapt.transfer.base import encode_labels
from quickadapt.settings import positive

MODES = ("deep", "closed")


@dataclass(frozen=True)
class CORALConfig(DeepConfig):
    mode: str = "deep"
    C: float = positive(1.0)  # closed mode: inverse L2 strength of the refitted logistic classifier

    def __post_init__(self):
        super().__post_init__()
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")


def coral_loss(xs: torch.Tensor, xt: torch.Tensor) -> torch.Tensor:
    d = xs.shape[1]
    if len(xs) < 2 or len(xt) < 2:  # no covariance from one example
        return xs.sum() * 0.0
    cs, ct = torch.cov(xs.T), torch.cov(xt.T)
    return (cs - ct).pow(2).sum() / (4 * d * d)


def _sqrtm(c: np.ndarray, power: float) -> np.ndarray:
    vals, vecs = np.linalg.eigh(c)
    vals = np.clip(vals, 1e-8, None)
    return (vecs * vals**power) @ vecs.T


def coral_transform(xs: np.ndarray, xt: np.ndarray) -> np.ndarray:
    """Source features whitened with their own covariance and re-coloured with the target's."""
    eye = np.eye(xs.shape[1])
    cs = np.cov(xs, rowvar=False) + eye
    ct = np.cov(xt, rowvar=False) + eye
    return xs @ _sqrtm(cs, -0.5) @ _sqrtm(ct, 0.5)


class CORAL(DeepMethod):
    name = "coral"
    Config = CORALConfig

    def transfer_loss(self, step):
        if self.cfg.mode != "deep":
            return None
        return coral_loss(step.ls, step.lt)  # on the class scores, as in Deep CORAL (its fc8)

    def fit(self, encoder, source, target, ctx):
        model = super().fit(encoder, source, target, ctx)
        if self.cfg.mode == "closed":
            zs, _ = representation(model, source.inputs)
            zt, _ = representation(model, target.inputs)
            _, y = encode_labels(source.labels, model.classes[MAIN_TASK])
            head = model.heads[MAIN_TASK]
            # unweighted, as the other domain methods' heads train (and as its settings were chosen)
            probe = LogisticHead(zs.shape[1], head.fc.out_features, C=self.cfg.C,
                                 class_weight="none").fit(coral_transform(zs, zt), y)
            head.fc.load_state_dict({k: v.to(head.fc.weight.device) for k, v in probe.fc.state_dict().items()})
        return model
