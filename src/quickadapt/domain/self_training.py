"""`self-training`: confidence-thresholded pseudo-labels (Lee 2013). After a source-only warm-up
(`start`, a fraction of the steps), every target example the current model predicts with
probability >= `threshold` adds a cross-entropy term towards its own predicted class.

`balance` (default on) averages that term per pseudo-class, then over the classes (the idea of
class-balanced self-training, Zou et al. 2018): under a strong shift the model is confidently
wrong towards a few classes first, and a plain mean lets those classes dominate the gradient,
pull in more examples and collapse the model onto them."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from quickadapt.domain.base import DeepConfig, DeepMethod
from quickadapt.settings import bounded, fraction


@dataclass(frozen=True)
class SelfTrainingConfig(DeepConfig):
    threshold: float = bounded(0.9, 0, 1, above_lo=True, below_hi=True)
    start: float = fraction(0.3, below_one=True)  # fraction of steps trained on the source alone first
    balance: bool = True  # each pseudo-class weighs the same, however many examples claim it


class SelfTraining(DeepMethod):
    name = "self-training"
    Config = SelfTrainingConfig

    def transfer_loss(self, step):
        if step.p < self.cfg.start:
            return step.lt.sum() * 0.0
        conf, pseudo = torch.softmax(step.lt.detach(), 1).max(1)
        mask = (conf >= self.cfg.threshold).float()
        ce = torch.nn.functional.cross_entropy(step.lt, pseudo, reduction="none")
        if not self.cfg.balance:
            return (ce * mask).sum() / len(mask)
        n_classes = step.lt.shape[1]
        per_class_n = step.lt.new_zeros(n_classes).index_add_(0, pseudo, mask)
        per_class_ce = step.lt.new_zeros(n_classes).index_add_(0, pseudo, ce * mask)
        present = per_class_n > 0
        if not present.any():
            return step.lt.sum() * 0.0
        # the share of confident examples still scales the term, as in the unbalanced mean
        return (per_class_ce[present] / per_class_n[present]).mean() * mask.mean()
