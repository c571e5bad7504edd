"""`l2sp`: fine-tune with the L2-SP penalty (Li et al. 2018): `alpha/2 * ||w - w0||^2` over the
encoder's weights, w0 being the pretrained starting point. Instead of decaying weights towards
zero, it keeps them near what pretraining learned, which matters most when examples are few."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from quickadapt.transfer.finetune import Finetune, FinetuneConfig, snapshot


@dataclass(frozen=True)
class L2SPConfig(FinetuneConfig):
    alpha: float = 0.01  # strength of the pull towards the pretrained weights (the paper's value)
    weight_decay: float = 0.0  # L2-SP replaces decay towards zero


class L2SP(Finetune):
    name = "l2sp"
    Config = L2SPConfig

    def prepare(self, encoder: nn.Module) -> nn.Module:
        encoder = super().prepare(encoder)
        self._start = snapshot(encoder)
        return encoder

    def regularizer(self, encoder, features: torch.Tensor) -> torch.Tensor | None:
        if not self.cfg.alpha:
            return None
        total = features.new_zeros(())
        for key, p in encoder.named_parameters():
            if p.requires_grad:
                total = total + (p - self._start[key]).pow(2).sum()
        return 0.5 * self.cfg.alpha * total

    def finish(self, encoder: nn.Module) -> nn.Module:
        self._start = None
        return encoder


__all__ = ["L2SP", "L2SPConfig"]
