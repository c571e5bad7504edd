"""`mlp`: a small multi-layer perceptron for feature vectors (trained from scratch)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from quickadapt.encoders.base import Encoder
from quickadapt.errors import BadInput


class MLPEncoder(Encoder):
    name = "mlp"
    modality = "features"

    def __init__(self, in_dim: int, *, hidden: int = 256, depth: int = 2, dropout: float = 0.1):
        super().__init__()
        if in_dim is None or int(in_dim) < 1:
            raise ValueError("the mlp encoder reads feature vectors and needs in_dim, their length")
        for ok, rule, value in ((int(hidden) >= 1, "hidden must be >= 1", hidden), (int(depth) >= 0, "depth must be >= 0", depth),
                                (0 <= float(dropout) < 1, "dropout must be in [0, 1)", dropout)):
            if not ok:  # the one setting that is wrong, not all three
                raise ValueError(f"{rule}, got {value}")
        self.settings = {"in_dim": int(in_dim), "hidden": int(hidden), "depth": int(depth), "dropout": float(dropout)}
        layers: list[nn.Module] = []
        width = int(in_dim)
        for _ in range(int(depth)):
            layers.append(nn.Sequential(nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Dropout(dropout)))
            width = hidden
        self.blocks = nn.ModuleList(layers)
        self.embed_dim = width

    def prepare(self, inputs):
        x = np.asarray(inputs, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.settings["in_dim"]:
            raise BadInput(f"the model reads {self.settings['in_dim']} features per example, the data has "
                           f"{x.shape[1] if x.ndim == 2 else 'rows of another shape'}")
        return torch.as_tensor(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x

    def layer_groups(self):
        return list(self.blocks)


def create_mlp(pretrained: bool = False, in_dim: int | None = None, **settings) -> MLPEncoder:
    # nothing pretrained exists for arbitrary feature vectors; `pretrained` is accepted for a uniform call
    return MLPEncoder(in_dim, **settings)
