"""`dann`: domain-adversarial training (Ganin et al. 2016). A domain discriminator reads the
bottleneck features through a gradient reversal layer whose coefficient follows the usual
schedule 2 / (1 + exp(-10 p)) - 1, so features become indistinguishable across domains."""
from __future__ import annotations

from quickadapt.domain.base import DeepMethod, discriminator, domain_bce, grad_reverse, warm_schedule


class DANN(DeepMethod):
    name = "dann"

    def build(self, hidden, n_classes):
        return discriminator(hidden)

    def transfer_loss(self, step):
        coeff = warm_schedule(step.p)
        return domain_bce(self.extra_(grad_reverse(step.zs, coeff)), self.extra_(grad_reverse(step.zt, coeff)))
