"""`bottleneck`: a small hidden layer then a linear classifier, the usual head for domain
adaptation (Ganin et al. 2016; Long et al. 2018): alignment losses act on the bottleneck
features (`features(x)`), and the classifier reads them."""
from __future__ import annotations

import torch
from torch import nn


class BottleneckHead(nn.Module):
    kind = "bottleneck"

    def __init__(self, embed_dim: int, n_classes: int, *, hidden: int = 256, dropout: float = 0.5):
        super().__init__()
        self.hidden = int(hidden)
        self.dropout = float(dropout)
        self.bottleneck = nn.Sequential(nn.Linear(embed_dim, self.hidden), nn.ReLU(), nn.Dropout(self.dropout))
        self.fc = nn.Linear(self.hidden, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bottleneck(x))

    def config(self) -> dict:
        return {
            "kind": self.kind, "embed_dim": self.bottleneck[0].in_features, "n_classes": self.fc.out_features,
            "hidden": self.hidden, "dropout": self.dropout,
        }
