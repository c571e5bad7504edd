"""`cdan` and `cdan-e`: conditional adversarial adaptation (Long et al. 2018). The discriminator
reads the multilinear map of bottleneck features and class predictions (their outer product, or a
randomised product when that is wider than `max_map` values), behind a gradient reversal layer on
the DANN schedule. `cdan-e` weights each example by 1 + exp(-entropy) of its prediction, so
confident examples count more."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from quickadapt.domain.base import DeepConfig, DeepMethod, discriminator, domain_bce, grad_reverse, warm_schedule
from quickadapt.settings import count


@dataclass(frozen=True)
class CDANConfig(DeepConfig):
    max_map: int = count(4096)  # above this many outer-product values, use a randomised map of width 1024
    random_dim: int = count(1024)


class ConditionalMap(nn.Module):
    """f (x) g: the flattened outer product, or (f R_f) * (g R_g) / sqrt(d) with fixed random R."""

    def __init__(self, feat_dim: int, n_classes: int, max_map: int, random_dim: int):
        super().__init__()
        self.randomized = feat_dim * n_classes > max_map
        self.out_dim = random_dim if self.randomized else feat_dim * n_classes
        if self.randomized:
            self.register_buffer("rf", torch.randn(feat_dim, random_dim))
            self.register_buffer("rg", torch.randn(n_classes, random_dim))

    def forward(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        if self.randomized:
            return (f @ self.rf) * (g @ self.rg) / self.out_dim**0.5
        return torch.bmm(g.unsqueeze(2), f.unsqueeze(1)).flatten(1)


class CDANModules(nn.Module):
    def __init__(self, mapper: ConditionalMap):
        super().__init__()
        self.mapper = mapper
        self.disc = discriminator(mapper.out_dim)


def entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p + 1e-8)).sum(1)


class CDAN(DeepMethod):
    name = "cdan"
    Config = CDANConfig
    entropy_weighting = False

    def build(self, hidden, n_classes):
        return CDANModules(ConditionalMap(hidden, n_classes, self.cfg.max_map, self.cfg.random_dim))

    def transfer_loss(self, step):
        coeff = warm_schedule(step.p)
        gs, gt = torch.softmax(step.ls, 1).detach(), torch.softmax(step.lt, 1).detach()
        m = self.extra_.mapper
        hs = grad_reverse(m(step.zs, gs), coeff)
        ht = grad_reverse(m(step.zt, gt), coeff)
        ws = wt = None
        if self.entropy_weighting:
            ws, wt = 1 + torch.exp(-entropy(gs)), 1 + torch.exp(-entropy(gt))
        return domain_bce(self.extra_.disc(hs), self.extra_.disc(ht), ws, wt)


class CDANE(CDAN):
    name = "cdan-e"
    entropy_weighting = True
