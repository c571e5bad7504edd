"""`prototype`: cosine similarity to each class's mean embedding (Snell et al. 2017, with the
cosine metric), scaled by a temperature so softmax scores are usable."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


class PrototypeHead(nn.Module):
    kind = "prototype"

    def __init__(self, embed_dim: int, n_classes: int, *, scale: float = 10.0):
        super().__init__()
        self.register_buffer("prototypes", torch.zeros(n_classes, embed_dim))
        self.scale = float(scale)

    def fit(self, features: np.ndarray, y: np.ndarray) -> "PrototypeHead":
        feats = torch.nn.functional.normalize(torch.as_tensor(features, dtype=torch.float32), dim=-1)
        y = torch.as_tensor(y)
        protos = torch.stack([feats[y == c].mean(0) for c in range(self.prototypes.shape[0])])
        self.prototypes.copy_(protos)
        return self

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        f = nn.functional.normalize(features, dim=-1)
        p = nn.functional.normalize(self.prototypes, dim=-1)
        return self.scale * f @ p.T

    def config(self) -> dict:
        embed_dim = self.prototypes.shape[1]
        return {"kind": self.kind, "embed_dim": embed_dim, "n_classes": self.prototypes.shape[0], "scale": self.scale}
