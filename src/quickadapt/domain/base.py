"""What every domain adaptation method shares: the fit context, paired source/target batches,
and `DeepMethod`, the one adversarial/discrepancy training recipe the deep methods specialise.

A deep method trains encoder -> bottleneck head on labelled source batches (cross-entropy) plus
`trade_off` times its own `transfer_loss` on a source batch and an unlabelled target batch seen
together. Pretrained encoders (minilm) stay frozen by default: their features are computed once
(and cached) and only the head and the method's own modules train; encoders trained from scratch
(mlp, conv4) always train. Each method overrides one or two hooks: `build` (extra modules such as
a domain discriminator), `transfer_loss`, and optionally `source_weights` (instance weights)."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from quickadapt.data.dataset import Dataset
from quickadapt.encoders.base import batch_to, embed
from quickadapt.heads import BottleneckHead
from quickadapt.model import MAIN_TASK, AdaptedModel
from quickadapt.settings import Settings, bounded, build_config, config_to_dict, count, fraction, own_rate, positive
from quickadapt.train import TrainConfig, train
from quickadapt.transfer.base import encode_labels

TUNE_CHOICES = ("auto", "yes", "no")


@dataclass
class DomainContext:
    """Everything a method needs besides the encoder and the two datasets.

    `score(model) -> float` (lower is better), when given, is a label-free validator: the fit
    evaluates it at `checkpoints` evenly spaced steps and keeps the best state (early stopping
    without target labels)."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    progress: bool = True
    score: Callable[[AdaptedModel], float] | None = None

    def describe(self, text: str) -> str | None:
        return text if self.progress else None


@dataclass(frozen=True)
class DeepConfig(Settings):
    steps: int = count(600)
    batch_size: int = count(32)  # per domain: each step sees this many source and this many target examples
    lr: float = positive(1e-3)  # head and method modules (discriminators)
    encoder_lr: float = own_rate()  # 0 = the encoder's own default (encoder.finetune_lr)
    weight_decay: float = 0.01
    hidden: int = count(256)  # bottleneck width
    dropout: float = fraction(0.5, below_one=True)
    trade_off: float = 1.0  # weight of the transfer loss
    tune_encoder: str = "auto"  # auto: train encoders without pretrained weights, freeze pretrained ones
    checkpoints: int = bounded(0, means={0: "the last state"})  # >0 with a validator: keep the best of this many evenly spaced states

    def __post_init__(self):
        super().__post_init__()
        if self.tune_encoder not in TUNE_CHOICES:
            raise ValueError(f"tune_encoder must be one of {', '.join(TUNE_CHOICES)}, got {self.tune_encoder!r}")


class DomainMethod:
    """A named way to adapt a source-trained classifier to an unlabelled target. Subclasses set
    `name`, `Config` (a frozen dataclass whose defaults work untuned) and implement `fit`."""

    name: str = ""
    Config: type = DeepConfig

    def __init__(self, **params):
        self.cfg = build_config(self.Config, params, f"domain method {self.name!r}")

    def params(self) -> dict:
        return config_to_dict(self.cfg)

    def fit(self, encoder, source: Dataset, target: Dataset, ctx: DomainContext) -> AdaptedModel:
        raise NotImplementedError


@dataclass
class Step:
    """One training step's view for `transfer_loss`: bottleneck features `zs`/`zt`, logits
    `ls`/`lt`, source targets `ys`, and training progress `p` in [0, 1]."""

    zs: torch.Tensor
    zt: torch.Tensor
    ls: torch.Tensor
    lt: torch.Tensor
    ys: torch.Tensor
    p: float


class PairedBatches:
    """One pass = the source shuffled into batches, each paired with a random target batch.
    Its own generator: the order depends only on the seed."""

    def __init__(self, n_source: int, n_target: int, batch_size: int, seed: int):
        self.ns, self.nt = n_source, n_target
        self.bs_s, self.bs_t = max(1, min(batch_size, n_source)), max(1, min(batch_size, n_target))
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self):
        order = torch.randperm(self.ns, generator=self.generator).numpy()
        for start in range(0, self.ns - self.bs_s + 1, self.bs_s):
            it = torch.randperm(self.nt, generator=self.generator)[: self.bs_t].numpy()
            yield order[start : start + self.bs_s], it


def warm_schedule(p: float, gamma: float = 10.0) -> float:
    """The usual adversarial weight schedule 2 / (1 + exp(-gamma p)) - 1: 0 at the start, -> 1."""
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


def resolve_tune(cfg: DeepConfig, encoder) -> bool:
    if cfg.tune_encoder == "auto":
        return not encoder.is_pretrained
    return cfg.tune_encoder == "yes"


class DeepMethod(DomainMethod):
    # ---- hooks --------------------------------------------------------------------------
    def build(self, hidden: int, n_classes: int) -> nn.Module | None:
        """Extra trainable modules (e.g. a domain discriminator), or None; `transfer_loss` finds
        them as `self.extra_`."""
        return None

    def source_weights(self, encoder, source: Dataset, target: Dataset, ctx: DomainContext) -> np.ndarray | None:
        """Per-example weights for the source cross-entropy (mean 1), or None for uniform."""
        return None

    def transfer_loss(self, step: Step) -> torch.Tensor | None:
        return None

    # ---- the fit ----------------------------------------------------------------------
    def fit(self, encoder, source, target, ctx):
        cfg = self.cfg
        dev = ctx.device
        classes, y = encode_labels(source.labels)
        ys_all = torch.as_tensor(y, device=dev)
        tune = resolve_tune(cfg, encoder)
        encoder.to(dev)
        weights = self.source_weights(encoder, source, target, ctx)
        w_all = None if weights is None else torch.as_tensor(weights, dtype=torch.float32, device=dev)

        if tune:
            encoder.requires_grad_(True)

            def encode(data: Dataset, idx):
                rows = data.inputs[idx] if isinstance(data.inputs, np.ndarray) else [data.inputs[i] for i in idx]
                return encoder(batch_to(encoder.prepare(rows), dev))
        else:
            encoder.requires_grad_(False)
            cached = {
                id(d): torch.as_tensor(embed(encoder, d.inputs, device=dev, progress=ctx.describe(f"embedding {what}")), device=dev)
                for d, what in ((source, "source"), (target, "target"))
            }

            def encode(data: Dataset, idx):
                return cached[id(data)][torch.as_tensor(idx, device=dev)]

        head = BottleneckHead(encoder.embed_dim, len(classes), hidden=cfg.hidden, dropout=cfg.dropout).to(dev)
        extra = self.build(cfg.hidden, len(classes))
        extra = extra.to(dev) if extra is not None else None
        self.extra_ = extra  # what transfer_loss reads (a discriminator, ...)
        state = {"step": 0}

        def loss_fn(batch):
            i_s, i_t = batch
            zs = head.features(encode(source, i_s))
            zt = head.features(encode(target, i_t))
            ls, lt = head.fc(zs), head.fc(zt)
            ys = ys_all[torch.as_tensor(i_s, device=dev)]
            ce = nn.functional.cross_entropy(ls, ys, reduction="none")
            if w_all is not None:
                ce = ce * w_all[torch.as_tensor(i_s, device=dev)]
            ce = ce.mean()
            extra_loss = self.transfer_loss(Step(zs, zt, ls, lt, ys, state["step"] / cfg.steps))
            if extra_loss is None:
                return ce
            return {"loss": ce + cfg.trade_off * extra_loss, "ce": ce.detach(), "transfer": extra_loss.detach()}

        groups = [{"params": list(head.parameters()), "lr": cfg.lr}]
        if extra is not None:
            groups.append({"params": list(extra.parameters()), "lr": cfg.lr})
        if tune:
            groups.append({"params": list(encoder.parameters()), "lr": cfg.encoder_lr or encoder.finetune_lr})

        model = AdaptedModel(
            encoder, {MAIN_TASK: head}, {MAIN_TASK: classes}, encoder_tuned=tune,
            strategy=f"domain:{self.name}", strategy_params=self.params(),
        )
        marks = set()
        if ctx.score is not None and cfg.checkpoints > 0:
            marks = {round(cfg.steps * k / cfg.checkpoints) for k in range(1, cfg.checkpoints + 1)}
        best = {"score": math.inf, "state": None, "step": None}

        def checkpoint(step: int) -> None:
            model.eval()
            s = float(ctx.score(model))
            if s < best["score"]:
                best.update(score=s, state=copy.deepcopy(model.state_dict()), step=step)
            model.train()

        def on_step(step: int) -> None:
            state["step"] = step
            if step in marks:
                checkpoint(step)

        model.train()
        summary = train(
            groups, loss_fn, PairedBatches(len(source), len(target), cfg.batch_size, ctx.seed),
            TrainConfig(steps=cfg.steps, weight_decay=cfg.weight_decay),
            description=ctx.describe(self.name), on_step=on_step,
        )
        if cfg.steps in marks:
            checkpoint(cfg.steps)
        if best["state"] is not None:
            model.load_state_dict(best["state"])
            summary["selected_step"] = best["step"]
            summary["selected_score"] = best["score"]
        encoder.requires_grad_(False)
        model.eval()
        model.info["train"] = summary
        return model


def representation(model: AdaptedModel, inputs, *, task: str = MAIN_TASK) -> tuple[np.ndarray, np.ndarray]:
    """(bottleneck features, class probabilities) of `inputs`, in eval mode: what alignment acts on."""
    feats = torch.as_tensor(model.features(inputs), device=model.device)
    head = model.heads[task]
    head.eval()
    with torch.no_grad():
        z = head.features(feats) if hasattr(head, "features") else feats
        proba = torch.softmax(head(feats).float(), dim=-1)
    return z.float().cpu().numpy(), proba.cpu().numpy()


class GradReverse(torch.autograd.Function):
    """Identity forward; multiplies the gradient by -coeff backward (Ganin & Lempitsky 2015)."""

    @staticmethod
    def forward(ctx, x, coeff):
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.coeff * grad, None


def grad_reverse(x: torch.Tensor, coeff: float) -> torch.Tensor:
    return GradReverse.apply(x, coeff)


def discriminator(in_dim: int, hidden: int = 256) -> nn.Module:
    """A small domain classifier: one logit, source = 1, target = 0."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(hidden, 1),
    )


def domain_bce(logit_s: torch.Tensor, logit_t: torch.Tensor, w_s=None, w_t=None) -> torch.Tensor:
    """Binary cross-entropy of a domain classifier, source labelled 1 and target 0; optional
    per-example weights (normalised to mean 1 within each domain)."""
    bce = nn.functional.binary_cross_entropy_with_logits
    ls = bce(logit_s.squeeze(1), torch.ones_like(logit_s.squeeze(1)), reduction="none")
    lt = bce(logit_t.squeeze(1), torch.zeros_like(logit_t.squeeze(1)), reduction="none")
    if w_s is not None:
        ls = ls * (w_s / w_s.mean())
        lt = lt * (w_t / w_t.mean())
    return 0.5 * (ls.mean() + lt.mean())


__all__ = [
    "DomainContext", "DomainMethod", "DeepMethod", "DeepConfig", "Step", "PairedBatches",
    "warm_schedule", "representation", "grad_reverse", "discriminator", "domain_bce",
]
