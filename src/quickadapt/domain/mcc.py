"""`mcc`: minimum class confusion (Jin et al. 2020). On each target batch, build the class
confusion matrix of temperature-scaled predictions, with examples weighted by their certainty
(1 + exp(-entropy)), normalise its rows, and minimise the off-diagonal mass."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from quickadapt.domain.base import DeepConfig, DeepMethod
from quickadapt.settings import positive


@dataclass(frozen=True)
class MCCConfig(DeepConfig):
    temperature: float = positive(2.5)


def mcc_loss(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    n, k = logits.shape
    y = torch.softmax(logits / temperature, dim=1)
    h = -(y * torch.log(y + 1e-5)).sum(1).detach()
    w = 1 + torch.exp(-h)
    w = (n * w / w.sum()).unsqueeze(1)
    confusion = (y * w).T @ y
    confusion = confusion / confusion.sum(1, keepdim=True)
    return (confusion.sum() - torch.trace(confusion)) / k


class MCC(DeepMethod):
    name = "mcc"
    Config = MCCConfig

    def transfer_loss(self, step):
        return mcc_loss(step.lt, self.cfg.temperature)
