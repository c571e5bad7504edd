"""Transfer strategies by name: `create_strategy("probe", C=1.0)`."""
from __future__ import annotations

from quickadapt.registry import Registry
from quickadapt.transfer.base import FitContext, Strategy, encode_labels
from quickadapt.transfer.blend import Blend
from quickadapt.transfer.bss import BSS
from quickadapt.transfer.contrastive import Contrastive
from quickadapt.transfer.discriminative import Discriminative
from quickadapt.transfer.finetune import Finetune
from quickadapt.transfer.freeze import Freeze
from quickadapt.transfer.joint import Joint
from quickadapt.transfer.l2sp import L2SP
from quickadapt.transfer.lora import LoRA
from quickadapt.transfer.multitask import Multitask
from quickadapt.transfer.probe import Probe
from quickadapt.transfer.prototypes import Prototypes

STRATEGIES: Registry[type[Strategy]] = Registry("strategy")
for _cls in (Probe, Prototypes, Finetune, Freeze, Discriminative, LoRA, L2SP, BSS, Contrastive, Joint, Multitask, Blend):
    STRATEGIES.register(_cls.name)(_cls)


def create_strategy(name: str, **params) -> Strategy:
    return STRATEGIES.get(name)(**params)


def list_strategies() -> list[str]:
    return STRATEGIES.names()


__all__ = ["STRATEGIES", "FitContext", "Strategy", "create_strategy", "encode_labels", "list_strategies"]
