"""`lora`: low-rank adapters (Hu et al. 2021) through the `peft` package. The pretrained weights
stay frozen; each targeted layer learns a rank-`r` update `B @ A * alpha / r` alongside a new head.

Targets are chosen per encoder: every nn.Linear (for BERT-style text encoders that is query, key,
value and the dense projections; the pooler, unused by the encoders, is skipped) and every
non-grouped nn.Conv2d. When training ends the adapters are merged into the base weights, so the
adapted encoder is a plain module with exactly `create_encoder(name)`'s parameters."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from quickadapt.errors import BadInput
from quickadapt.transfer.finetune import Finetune, FinetuneConfig
from quickadapt.settings import bounded, count, fraction, positive


@dataclass(frozen=True)
class LoRAConfig(FinetuneConfig):
    r: int = count(8)  # rank of each update
    alpha: float = positive(16.0)  # scaling: the update is multiplied by alpha / r
    dropout: float = fraction(0.1, below_one=True)  # dropout on the adapter's input
    lr: float = bounded(5e-4, means={0: "the encoder's own rate"})  # adapters start at zero and are few: they take a larger step than full fine-tuning


def lora_targets(encoder: nn.Module) -> list[str]:
    """Full names of the layers that get adapters."""
    targets = []
    for name, module in encoder.named_modules():
        if "pooler" in name.split("."):
            continue
        if isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.groups == 1):
            targets.append(name)
    if not targets:
        raise BadInput(
            f"strategy 'lora': encoder {getattr(encoder, 'name', type(encoder).__name__)!r} has no linear or "
            "convolution layers to adapt; use strategy 'finetune' or 'freeze' instead"
        )
    return targets


class LoRA(Finetune):
    name = "lora"
    Config = LoRAConfig

    def prepare(self, encoder: nn.Module) -> nn.Module:
        from peft import LoraConfig
        from peft.tuners.lora import LoraModel

        config = LoraConfig(
            r=self.cfg.r, lora_alpha=self.cfg.alpha, lora_dropout=self.cfg.dropout,
            target_modules=lora_targets(encoder), bias="none",
        )
        # injects the adapters into `encoder` in place and freezes everything else
        self._peft = LoraModel(encoder, config, "default")
        return encoder

    def finish(self, encoder: nn.Module) -> nn.Module:
        merged = self._peft.merge_and_unload()  # each adapted layer back to a plain nn.Linear/Conv2d
        self._peft = None
        return merged.requires_grad_(True)


__all__ = ["LoRA", "LoRAConfig", "lora_targets"]
