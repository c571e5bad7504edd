"""`probe`: keep the encoder frozen, fit a logistic-regression head on its features.
The fastest strategy and a strong one at every K; features come from the embedding cache."""
from __future__ import annotations

from dataclasses import dataclass

from quickadapt.heads import LogisticHead
from quickadapt.transfer.base import Strategy, fit_frozen
from quickadapt.settings import inverse_strength, Settings


@dataclass(frozen=True)
class ProbeConfig(Settings):
    C: float = inverse_strength(10.0)  # inverse L2 strength; 10 suits unit-norm sentence embeddings and pooled CNN features
    class_weight: str = "balanced"  # balanced: each class weighs the same in the loss however many examples it has; none

    def __post_init__(self):
        super().__post_init__()
        if self.class_weight not in ("balanced", "none"):
            raise ValueError(f"class_weight is 'balanced' or 'none', got {self.class_weight!r}")


class Probe(Strategy):
    name = "probe"
    tunes_encoder = False
    Config = ProbeConfig

    def fit(self, encoder, data, ctx):
        return fit_frozen(self, encoder, data, ctx, lambda dim, n: LogisticHead(dim, n, C=self.cfg.C, class_weight=self.cfg.class_weight))
