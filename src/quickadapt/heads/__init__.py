"""Classifier heads on top of embeddings, by name: `linear`, `logistic`, `prototype`, `bottleneck`, `kernel`, `kernel-ensemble`."""
from __future__ import annotations

from torch import nn

from quickadapt.heads.bottleneck import BottleneckHead
from quickadapt.heads.kernel import KernelEnsembleHead, KernelHead
from quickadapt.heads.linear import LinearHead
from quickadapt.heads.logistic import LogisticHead
from quickadapt.heads.prototype import PrototypeHead
from quickadapt.registry import Registry

HEADS: Registry[type] = Registry("head")
HEADS.register("linear")(LinearHead)
HEADS.register("logistic")(LogisticHead)
HEADS.register("prototype")(PrototypeHead)
HEADS.register("bottleneck")(BottleneckHead)
HEADS.register("kernel")(KernelHead)
HEADS.register("kernel-ensemble")(KernelEnsembleHead)


def create_head(config: dict) -> nn.Module:
    """Rebuild a head from its `config()` dict (the `kind` key picks the class)."""
    cfg = dict(config)
    cls = HEADS.get(cfg.pop("kind"))
    return cls(cfg.pop("embed_dim"), cfg.pop("n_classes"), **cfg)


__all__ = ["HEADS", "BottleneckHead", "KernelEnsembleHead", "KernelHead", "LinearHead", "LogisticHead", "PrototypeHead", "create_head"]
