"""`reweight`: instance reweighting by the density ratio (Shimodaira 2000; Bickel et al. 2007).
A logistic domain classifier separates source from target; each source example's cross-entropy
is weighted by w = p(target | x) / p(source | x), scaled by the domain sizes, clipped to
[1/max_weight, max_weight], flattened to w^power (Shimodaira's lambda: 1 is the plain ratio,
0 is no reweighting; in between trades bias for variance, since a confident domain classifier
puts most of the weight on a few examples) and normalised to mean 1. It reads the raw values of feature vectors,
and the untrained encoder's features otherwise."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quickadapt.domain.base import DeepConfig, DeepMethod
from quickadapt.encoders.base import embed
from quickadapt.settings import bounded, fraction, positive


@dataclass(frozen=True)
class ReweightConfig(DeepConfig):
    max_weight: float = bounded(10.0, 1, above_lo=True)
    C: float = positive(0.1)  # inverse L2 strength of the domain classifier
    power: float = fraction(0.5)  # flattening exponent lambda in [0, 1]


class Reweight(DeepMethod):
    name = "reweight"
    Config = ReweightConfig

    def source_weights(self, encoder, source, target, ctx):
        from quickadapt.domain.validate import density_ratio

        if source.modality == "features":
            xs, xt = np.asarray(source.inputs, dtype=np.float32), np.asarray(target.inputs, dtype=np.float32)
        else:
            xs = embed(encoder, source.inputs, device=ctx.device, cache=encoder.is_pretrained)
            xt = embed(encoder, target.inputs, device=ctx.device, cache=encoder.is_pretrained)
        w = density_ratio(xs, xt, C=self.cfg.C, seed=ctx.seed, max_weight=self.cfg.max_weight) ** self.cfg.power
        w = w / w.mean()
        self.weights_ = w
        return w
