"""`kernel`: a kernel machine over stored support points, f(x) = scale * sum_i beta_i k(x_i, x)
with a Gaussian kernel, after a fixed linear map and per-dimension scaling of the features.

Closed-form, transductive-style methods (MEDA in `domain/meda.py`) solve for `beta` on the
source and target examples together; this head keeps what they solved so the result predicts
new inputs like any other model. Everything lives in buffers, so it saves as safetensors."""
from __future__ import annotations

import math

import torch
from torch import nn


class KernelHead(nn.Module):
    kind = "kernel"

    def __init__(self, embed_dim: int, n_classes: int, *, n_support: int = 1, sigma: float = 1.0, scale: float = 1.0):
        super().__init__()
        self.register_buffer("transform", torch.eye(embed_dim))  # features -> kernel space (embed_dim x embed_dim)
        self.register_buffer("column_scale", torch.ones(embed_dim))  # applied after the transform
        self.register_buffer("support", torch.zeros(n_support, embed_dim))
        self.register_buffer("beta", torch.zeros(n_support, n_classes))
        self.sigma = float(sigma)
        self.scale = float(scale)

    def features(self, features: torch.Tensor) -> torch.Tensor:
        """The space the kernel compares in (what label-free validators read as the model's features)."""
        return (features.to(self.transform.dtype) @ self.transform) * self.column_scale

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = self.features(features)
        k = torch.exp(-torch.cdist(z, self.support).pow(2) / (2 * self.sigma**2))
        return self.scale * k @ self.beta

    def config(self) -> dict:
        n_support, n_classes = self.beta.shape
        return {"kind": self.kind, "embed_dim": self.transform.shape[0], "n_classes": n_classes,
                "n_support": n_support, "sigma": self.sigma, "scale": self.scale}


class KernelEnsembleHead(nn.Module):
    """Several kernel machines fitted to the same classes (meda's `ensemble`: one per setting of
    a fixed grid), predicting with the mean of their class probabilities. Its logits are the log
    of that mean, so a softmax (predict_proba, thresholds, validators) reads the average itself.
    `members` are the members' KernelHead configs; each keeps its own buffers, so it saves as
    safetensors like any other head."""

    kind = "kernel-ensemble"

    def __init__(self, embed_dim: int, n_classes: int, *, members: list[dict] = ()):
        super().__init__()
        self.members = nn.ModuleList(
            KernelHead(embed_dim, n_classes, n_support=m.get("n_support", 1), sigma=m.get("sigma", 1.0), scale=m.get("scale", 1.0))
            for m in members)

    def features(self, features: torch.Tensor) -> torch.Tensor:
        """The members' kernel spaces side by side: squared distances there are the sum of the
        members' own, so no one member's space stands for the ensemble's."""
        return torch.cat([m.features(features) for m in self.members], dim=-1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        log_p = torch.stack([torch.log_softmax(m(features), dim=-1) for m in self.members])
        return torch.logsumexp(log_p, dim=0) - math.log(len(self.members))

    def config(self) -> dict:
        first = self.members[0].config()
        return {"kind": self.kind, "embed_dim": first["embed_dim"], "n_classes": first["n_classes"],
                "members": [m.config() for m in self.members]}
