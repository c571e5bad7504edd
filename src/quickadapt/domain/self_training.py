"""`self-training`: confidence-thresholded pseudo-labels (Lee 2013). After a source-only warm-up
(`start`, a fraction of the steps), every target example the current model predicts with
probability >= `threshold` adds a cross-entropy term towards its own predicted class."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from quickadapt.domain.base import DeepConfig, DeepMethod


@dataclass(frozen=True)
class SelfTrainingConfig(DeepConfig):
    threshold: float = 0.9
    start: float = 0.3  # fraction of steps trained on the source alone first

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if not 0 <= self.start < 1:
            raise ValueError(f"start must be in [0, 1), got {self.start}")


class SelfTraining(DeepMethod):
    name = "self-training"
    Config = SelfTrainingConfig

    def transfer_loss(self, step):
        if step.p < self.cfg.start:
            return step.lt.sum() * 0.0
        conf, pseudo = torch.softmax(step.lt.detach(), 1).max(1)
        mask = (conf >= self.cfg.threshold).float()
        ce = torch.nn.functional.cross_entropy(step.lt, pseudo, reduction="none")
        return (ce * mask).sum() / len(mask)
