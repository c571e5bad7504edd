"""`prototypes`: frozen encoder, each class is the mean of its examples' features, scored by
cosine similarity (Snell et al. 2017). Needs no training at all; works from one example per class."""
from __future__ import annotations

from dataclasses import dataclass

from quickadapt.heads import PrototypeHead
from quickadapt.transfer.base import Strategy, fit_frozen
from quickadapt.settings import Settings, positive


@dataclass(frozen=True)
class PrototypesConfig(Settings):
    scale: float = positive(10.0)  # softmax temperature on cosine similarities: shapes scores, not predictions


class Prototypes(Strategy):
    name = "prototypes"
    tunes_encoder = False
    Config = PrototypesConfig

    def fit(self, encoder, data, ctx):
        return fit_frozen(self, encoder, data, ctx, lambda dim, n: PrototypeHead(dim, n, scale=self.cfg.scale))
