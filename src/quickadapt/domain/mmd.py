"""`mmd`: deep adaptation networks (DAN, Long et al. 2015): minimise the multi-kernel maximum
mean discrepancy between source and target bottleneck features. The kernel is a sum of Gaussians
whose bandwidths are the batch's mean squared distance times 2^k, k = -2..2; its weight rises on
the DANN schedule 2 / (1 + exp(-10 p)) - 1."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from quickadapt.domain.base import DeepConfig, DeepMethod, warm_schedule
from quickadapt.settings import bounded, count


@dataclass(frozen=True)
class MMDConfig(DeepConfig):
    kernels: int = count(5)  # Gaussian kernels, bandwidths spaced by factors of kernel_mul around the mean distance
    kernel_mul: float = bounded(2.0, 1, above_lo=True)


def mk_mmd(xs: torch.Tensor, xt: torch.Tensor, kernels: int = 5, kernel_mul: float = 2.0) -> torch.Tensor:
    """Biased estimate of the squared MMD with a multi-kernel Gaussian (DAN)."""
    x = torch.cat([xs, xt])
    sq = (x * x).sum(1)
    # squared distances without a square root: cdist's gradient at distance 0 (the diagonal) is NaN
    d2 = (sq[:, None] + sq[None, :] - 2 * x @ x.T).clamp_min(0)
    n = len(x)
    # the bandwidth follows the features (not detached): the loss is then invariant to their
    # scale, so it cannot be lowered by shrinking every feature towards 0 (with a detached
    # bandwidth it can, and on CLINC150 + minilm it did, down to chance accuracy)
    base = d2.sum() / max(1, n * n - n)
    base = base / (kernel_mul ** (kernels // 2))
    k = sum(torch.exp(-d2 / (base * kernel_mul**i + 1e-12)) for i in range(kernels))
    ns = len(xs)
    return k[:ns, :ns].mean() + k[ns:, ns:].mean() - 2 * k[:ns, ns:].mean()


class MMD(DeepMethod):
    name = "mmd"
    Config = MMDConfig

    def transfer_loss(self, step):
        # ramped in on the DANN schedule: at the start the bottleneck features carry no class
        # structure yet, and a full-weight MMD collapses them (dead ReLUs) before the
        # classifier can form (measured on CLINC150 with minilm: chance accuracy without the ramp)
        return warm_schedule(step.p) * mk_mmd(step.zs, step.zt, self.cfg.kernels, self.cfg.kernel_mul)
