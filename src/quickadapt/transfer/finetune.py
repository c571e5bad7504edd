"""`finetune`: train every encoder layer together with a linear head (cross-entropy).

The head starts from a logistic-regression probe on the frozen features (LP-FT, Kumar et al.
2022): a random head would send large, noisy gradients into the pretrained layers in the first
steps and distort them. Other fine-tuning strategies (freeze, discriminative, lora, l2sp, bss,
joint) reuse this loop and override one hook each: `prepare` (what trains), `param_groups`
(learning rates), `regularizer` (an extra loss term), `on_step` (schedules), `finish`."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from quickadapt.encoders.base import batch_to, embed
from quickadapt.heads import LinearHead, LogisticHead
from quickadapt.model import MAIN_TASK, AdaptedModel
from quickadapt.train import TrainConfig, check_norm_stats, train, train_mode
from quickadapt.transfer.base import MiniBatches, Strategy, encode_labels
from quickadapt.settings import Settings, count, no_limit, own_rate, positive


@dataclass(frozen=True)
class FinetuneConfig(Settings):
    epochs: int = count(8)
    min_steps: int = 60  # tiny datasets still get enough updates
    batch_size: int = count(32)
    lr: float = own_rate()  # encoder learning rate; 0 = the encoder's own default (encoder.finetune_lr)
    head_lr: float = positive(1e-3)
    weight_decay: float = 0.01
    probe_init: bool = True  # start the head from a logistic-regression probe (LP-FT)
    # a randomly shifted view of each image per step (encoder.augment); text and feature rows are
    # never augmented. Off by default: on scikit-learn digits with conv4 it helped at K=1 and 5
    # (+1 to +4 points) but cost 3 to 5 points at K=10 (3 seeds each)
    augment: bool = False
    time_budget: float = no_limit(0.0)  # seconds, 0 = none
    # BatchNorm statistics while training: "auto" keeps trained ones frozen (train_mode)
    norm_stats: str = "auto"

    def __post_init__(self):
        super().__post_init__()
        check_norm_stats(self.norm_stats)


class Finetune(Strategy):
    name = "finetune"
    Config = FinetuneConfig

    # ---- hooks --------------------------------------------------------------------------
    def prepare(self, encoder: nn.Module) -> nn.Module:
        """Choose what trains; may wrap the encoder. Default: everything."""
        encoder.requires_grad_(True)
        return encoder

    def encoder_lr(self, encoder) -> float:
        return self.cfg.lr or getattr(encoder, "finetune_lr", 1e-4)

    def param_groups(self, encoder, head) -> list[dict]:
        return [
            {"params": [p for p in encoder.parameters() if p.requires_grad], "lr": self.encoder_lr(encoder)},
            {"params": list(head.parameters()), "lr": self.cfg.head_lr},
        ]

    def regularizer(self, encoder, features: torch.Tensor) -> torch.Tensor | None:
        return None

    def on_step(self, step: int, total: int) -> None:
        pass

    def finish(self, encoder: nn.Module) -> nn.Module:
        return encoder

    # ---- the fit ----------------------------------------------------------------------
    def build_head(self, encoder, data, y, n_classes, ctx) -> nn.Module:
        if not self.cfg.probe_init:
            return LinearHead(encoder.embed_dim, n_classes)
        feats = embed(encoder, data.inputs, device=ctx.device, progress=ctx.describe("embedding"))
        probe = LogisticHead(encoder.embed_dim, n_classes).fit(feats, y)
        head = LinearHead(encoder.embed_dim, n_classes)
        head.load_state_dict(probe.state_dict())
        return head

    def steps_for(self, n: int) -> int:
        return max(self.cfg.min_steps, self.cfg.epochs * -(-n // self.cfg.batch_size))

    def fit(self, encoder, data, ctx):
        classes, y = encode_labels(data.labels)
        encoder.to(ctx.device)
        head = self.build_head(encoder, data, y, len(classes), ctx).to(ctx.device)
        encoder = self.prepare(encoder)
        targets = torch.as_tensor(y, device=ctx.device)
        inputs = data.inputs
        views = torch.Generator().manual_seed(ctx.seed + 1)  # its own stream: batch order stays as without

        def loss_fn(idx):
            batch = encoder.prepare([inputs[i] for i in idx])
            if self.cfg.augment and torch.is_tensor(batch):
                batch = encoder.augment(batch, views)
            feats = encoder(batch_to(batch, ctx.device))
            loss = nn.functional.cross_entropy(head(feats), targets[idx])
            extra = self.regularizer(encoder, feats)
            return loss if extra is None else loss + extra

        steps = self.steps_for(len(data))
        train_mode(encoder, self.cfg.norm_stats)
        head.train()
        summary = train(
            self.param_groups(encoder, head),
            loss_fn,
            MiniBatches(len(data), self.cfg.batch_size, ctx.seed),
            TrainConfig(steps=steps, weight_decay=self.cfg.weight_decay, time_budget=self.cfg.time_budget or None),
            description=ctx.describe(f"{self.name}"),
            on_step=lambda step: self.on_step(step, steps),
        )
        summary["encoder_lr"] = self.encoder_lr(encoder)  # the rate used: settings say 0 for the encoder's own
        encoder = self.finish(encoder).eval()
        model = AdaptedModel(
            encoder, {MAIN_TASK: head.eval()}, {MAIN_TASK: classes}, encoder_tuned=True,
            strategy=self.name, strategy_params=self.params(),
        )
        model.info["train"] = summary
        return model


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of the trainable parameters (the pretrained starting point for L2-SP)."""
    return {k: v.detach().clone() for k, v in module.named_parameters() if v.requires_grad}


__all__ = ["Finetune", "FinetuneConfig", "snapshot"]
