"""`bss`: fine-tune with Batch Spectral Shrinkage (Chen et al. 2019): penalise the `k` smallest
singular values of each batch's feature matrix, `eta * sum(sigma_i^2)`. Small singular directions
carry what does not transfer; shrinking them curbs negative transfer with few examples."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from quickadapt.transfer.finetune import Finetune, FinetuneConfig
from quickadapt.settings import count


@dataclass(frozen=True)
class BSSConfig(FinetuneConfig):
    k: int = count(1)  # how many of the smallest singular values to shrink
    eta: float = 1e-3  # penalty weight


class BSS(Finetune):
    name = "bss"
    Config = BSSConfig

    def regularizer(self, encoder, features: torch.Tensor) -> torch.Tensor | None:
        if not self.cfg.eta or features.shape[0] < 2:
            return None
        sigma = torch.linalg.svdvals(features.float())  # descending
        return self.cfg.eta * sigma[-min(self.cfg.k, len(sigma)) :].pow(2).sum()


__all__ = ["BSS", "BSSConfig"]
