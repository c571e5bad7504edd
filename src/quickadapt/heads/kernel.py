"""`kernel`: a kernel machine over stored support points, f(x) = scale * sum_i beta_i k(x_i, x)
with a Gaussian kernel, after a fixed linear map and per-dimension scaling of the features.

Closed-form, transductive-style methods (MEDA in `domain/meda.py`) solve for `beta` on the
source and target examples together; this head keeps what they solved so the result predicts
new inputs like any other model. Everything lives in buffers, so it saves as safetensors."""
from __future__ import annotations

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
