"""`discriminative`: layer-wise learning rates with gradual unfreezing (ULMFiT, Howard & Ruder 2018).

Layer group i (counted from the top, 0 = the top one) learns at `lr * decay**i`: lower layers hold
more general features and move less. Training starts with only the top group (and the head)
unfrozen; one more group unfreezes every `unfreeze_every` fraction of the steps."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from quickadapt.transfer.finetune import Finetune, FinetuneConfig
from quickadapt.settings import bounded, fraction


@dataclass(frozen=True)
class DiscriminativeConfig(FinetuneConfig):
    decay: float = bounded(0.8, 0, 1, above_lo=True)  # learning-rate factor per layer group below the top (BERT-style layer decay)
    unfreeze_every: float = fraction(0.1, means={0: "all train from the start"})  # fraction of steps between unfreezing groups; 0 = all train from the start


class Discriminative(Finetune):
    name = "discriminative"
    Config = DiscriminativeConfig

    def prepare(self, encoder: nn.Module) -> nn.Module:
        # everything starts trainable so the optimiser holds every group; on_step(0) freezes
        self._groups = encoder.layer_groups()
        return encoder.requires_grad_(True)

    def param_groups(self, encoder, head) -> list[dict]:
        lr = self.encoder_lr(encoder)
        n = len(self._groups)
        seen: set[int] = set()
        out = []
        for i, group in enumerate(self._groups):
            params = [p for p in group.parameters() if id(p) not in seen]
            seen.update(id(p) for p in params)
            out.append({"params": params, "lr": lr * self.cfg.decay ** (n - 1 - i)})
        rest = [p for p in encoder.parameters() if id(p) not in seen]  # outside every group (a pooler)
        if rest:
            out.append({"params": rest, "lr": lr})
        out.append({"params": list(head.parameters()), "lr": self.cfg.head_lr})
        return out

    def on_step(self, step: int, total: int) -> None:
        n = len(self._groups)
        if self.cfg.unfreeze_every <= 0:
            unfrozen = n
        else:
            unfrozen = 1 + int(step / max(1.0, self.cfg.unfreeze_every * total))
        for i, group in enumerate(self._groups):
            group.requires_grad_(i >= n - unfrozen)

    def finish(self, encoder: nn.Module) -> nn.Module:
        self._groups = None
        return encoder.requires_grad_(True)


__all__ = ["Discriminative", "DiscriminativeConfig"]
