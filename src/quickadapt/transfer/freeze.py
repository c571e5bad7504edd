"""`freeze`: fine-tune only the top of the encoder; its first `k` layer groups stay at their
pretrained weights. Fewer trainable weights overfit a handful of examples less, and the lower
layers (generic features) are the ones worth keeping (Yosinski et al. 2014)."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from quickadapt.progress import log
from quickadapt.transfer.finetune import Finetune, FinetuneConfig
from quickadapt.settings import bounded


@dataclass(frozen=True)
class FreezeConfig(FinetuneConfig):
    k: int = bounded(-1, -1, means={-1: "half the layer groups"})  # layer groups frozen, counted from the input; -1 = half of them (rounded down)


def frozen_count(k: int, n_groups: int) -> int:
    return n_groups // 2 if k == -1 else min(k, n_groups)


class Freeze(Finetune):
    name = "freeze"
    Config = FreezeConfig

    def prepare(self, encoder: nn.Module) -> nn.Module:
        encoder.requires_grad_(True)
        groups = encoder.layer_groups()
        if self.cfg.k >= len(groups):
            log(f"note: freeze k={self.cfg.k} but {encoder.name} has {len(groups)} layer groups: all of them are "
                "frozen and only the head trains (the probe strategy does that faster)")
        for group in groups[: frozen_count(self.cfg.k, len(groups))]:
            group.requires_grad_(False)
        return encoder

    def finish(self, encoder: nn.Module) -> nn.Module:
        return encoder.requires_grad_(True)


__all__ = ["Freeze", "FreezeConfig"]
