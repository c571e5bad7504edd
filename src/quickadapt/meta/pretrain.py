"""Supervised pretraining before meta-training (the "P" of P>M>F, Hu et al. 2022).

The body plus a linear head learn plain cross-entropy over every meta-training class at once
(each rotation a class of its own when rotations are on), on batches drawn uniformly from all
their examples; then the head is dropped and episodic meta-training continues from the body.
A many-way classification task teaches a random-init conv4 far more per step than 5-way
episodes do, which is the point: meta-training then refines a body that already separates
characters. Settings come from `--set`: pretrain_steps (0: no pretraining), pretrain_batch,
pretrain_lr (default: the encoder's fine-tuning rate), pretrain_budget (seconds)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from quickadapt.data.episodes import EpisodeSampler
from quickadapt.meta.base import accuracy
from quickadapt.meta.train import check_diverged
from quickadapt.progress import progress_bar
from quickadapt.settings import Settings, bounded, count, positive

KEYS = ("pretrain_steps", "pretrain_batch", "pretrain_lr", "pretrain_budget")


@dataclass(frozen=True)
class PretrainConfig(Settings):
    pretrain_steps: int = 0
    pretrain_batch: int = bounded(64, 2)
    pretrain_lr: float | None = positive(None)  # None: the encoder's fine-tuning rate (conv4 1e-3, minilm 3e-5)
    pretrain_budget: float | None = positive(None)  # seconds; stops early


def pretrain(
    encoder: nn.Module, sampler: EpisodeSampler, cfg: PretrainConfig, *, seed: int, device, description: str | None,
    stop: Callable[[float], str | None] | None = None,
) -> dict:
    """Train `encoder` in place on labelled batches of `sampler`'s classes; return a summary.
    `stop(seconds so far)`, checked before each step, gives a reason to stop early (a run's
    time budget, Ctrl-C) or None; without it, `pretrain_budget` alone can stop the stage."""
    if stop is None:
        stop = lambda seconds: budget_spent(cfg, seconds)  # noqa: E731
    n_classes = len(sampler.classes)
    lr = float(cfg.pretrain_lr or encoder.finetune_lr)
    generator = torch.Generator().manual_seed(seed)  # its own: the episodes' generator is untouched
    head = nn.Linear(encoder.embed_dim, n_classes).to(device)
    encoder.to(device).train()
    params = [p for p in encoder.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.Adam(params, lr=lr)
    loss_avg = acc_avg = None
    started = time.perf_counter()
    stopped, step = "steps", 0
    with progress_bar(description, total=cfg.pretrain_steps) as advance:
        while step < cfg.pretrain_steps:
            reason = stop(time.perf_counter() - started)
            if reason:
                stopped = reason
                break
            x, y = sampler.labelled_batch(cfg.pretrain_batch, generator)
            x, y = x.to(device), y.to(device)
            logits = head(encoder(x))
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            acc, value = accuracy(logits, y), float(loss.detach())
            check_diverged(value, step + 1, "pretraining", "pretrain_lr")
            # running means (exponential, 0.95), as in meta-training
            loss_avg = value if loss_avg is None else 0.95 * loss_avg + 0.05 * value
            acc_avg = acc if acc_avg is None else 0.95 * acc_avg + 0.05 * acc
            step += 1
            advance(1, description=f"{description} acc {acc_avg:.1%} loss {loss_avg:.3f}")
    return {"steps": step, "stopped": stopped, "classes": n_classes, "batch": cfg.pretrain_batch, "lr": lr,
            "running_loss": loss_avg, "running_accuracy": acc_avg,
            "seconds": round(time.perf_counter() - started, 3)}


def budget_spent(cfg: PretrainConfig, seconds: float) -> str | None:
    return "pretrain_budget" if cfg.pretrain_budget is not None and seconds > cfg.pretrain_budget else None


__all__ = ["KEYS", "PretrainConfig", "budget_spent", "pretrain"]
