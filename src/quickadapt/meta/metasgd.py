"""`metasgd`: Meta-SGD (Li et al. 2017): MAML with a learned inner learning rate for every
parameter element, meta-trained with the initialisation (second order by default)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from quickadapt.meta.maml import MAML, MAMLConfig


@dataclass(frozen=True)
class MetaSGDConfig(MAMLConfig):
    inner_lr: float = 0.1  # the initial value of every learned rate


class MetaSGD(MAML):
    name = "metasgd"
    Config = MetaSGDConfig

    def __init__(self, encoder: nn.Module, cfg: MetaSGDConfig):
        super().__init__(encoder, cfg)
        shapes = {k: p.shape for k, p in encoder.named_parameters()}
        shapes.update({"head.weight": self.head_weight.shape, "head.bias": self.head_bias.shape})
        # ParameterDict keys cannot hold dots
        self.lrs = nn.ParameterDict({k.replace(".", "__"): nn.Parameter(torch.full(s, cfg.inner_lr)) for k, s in shapes.items()})

    def inner_lr(self):
        return {k.replace("__", "."): v for k, v in self.lrs.items()}
