"""`linear`: a linear layer on the embeddings, trained by gradient descent with the encoder."""
from __future__ import annotations

import torch
from torch import nn


class LinearHead(nn.Module):
    kind = "linear"

    def __init__(self, embed_dim: int, n_classes: int):
        super().__init__()
        self.fc = nn.Linear(embed_dim, n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)

    def config(self) -> dict:
        return {"kind": self.kind, "embed_dim": self.fc.in_features, "n_classes": self.fc.out_features}
