"""`joint`: fine-tune one encoder on the target task and a second labelled (source) task at once,
loss = CE(target) + lam * CE(source). The source adds examples that shape the shared features.

If every source class is also a target class, both tasks share one head (the source simply adds
labelled examples); otherwise the source gets its own head, used only during training. The result
is an ordinary classifier over the target's classes. `multitask` reuses `fit_two_tasks`."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from quickadapt.data.dataset import Dataset
from quickadapt.encoders.base import batch_to
from quickadapt.errors import BadInput, option
from quickadapt.model import MAIN_TASK, AdaptedModel
from quickadapt.train import TrainConfig, train, train_mode
from quickadapt.transfer.base import FitContext, MiniBatches, encode_labels
from quickadapt.transfer.finetune import Finetune, FinetuneConfig

SOURCE_TASK = "source"


@dataclass(frozen=True)
class JointConfig(FinetuneConfig):
    lam: float = 0.5  # weight of the source loss


class PairedBatches:
    """Each item is (target indices, source indices); one pass covers the target once while the
    source cycles on its own, reshuffled by its own generator."""

    def __init__(self, target: MiniBatches, source: MiniBatches):
        self.target, self.source = target, source
        self._source_iter = iter(())

    def _next_source(self):
        for _ in range(2):
            try:
                return next(self._source_iter)
            except StopIteration:
                self._source_iter = iter(self.source)
        raise ValueError("no source batches")

    def __iter__(self):
        for t in self.target:
            yield t, self._next_source()

    def __len__(self) -> int:
        return len(self.target)


def require_source(strategy, data: Dataset, ctx: FitContext) -> Dataset:
    source = ctx.source
    if source is None:
        raise BadInput(f"strategy {strategy.name!r} needs a labelled source dataset ({option('source')})")
    if source.labels is None or len(source) == 0:
        raise BadInput(f"strategy {strategy.name!r}: the source dataset has no labelled examples")
    if source.modality != data.modality:
        raise BadInput(
            f"strategy {strategy.name!r}: the source is {source.modality} data but the target is {data.modality}"
        )
    return source


def fit_two_tasks(strategy: Finetune, encoder, data: Dataset, source: Dataset, ctx: FitContext, *, lam: float,
                  share_head: bool) -> tuple[nn.Module, dict, dict, dict]:
    """Train `encoder` with a target head and a source head (the same module when `share_head`,
    which needs the source's classes inside the target's). Returns encoder, heads, classes, summary."""
    cfg = strategy.cfg
    classes_t, y_t = encode_labels(data.labels)
    classes_s, y_s = encode_labels(source.labels, classes_t if share_head else None)
    encoder.to(ctx.device)
    head_t = strategy.build_head(encoder, data, y_t, len(classes_t), ctx).to(ctx.device)
    head_s = head_t if share_head else strategy.build_head(encoder, source, y_s, len(classes_s), ctx).to(ctx.device)
    encoder = strategy.prepare(encoder)
    targets_t = torch.as_tensor(y_t, device=ctx.device)
    targets_s = torch.as_tensor(y_s, device=ctx.device)

    def loss_fn(pair):
        idx_t, idx_s = pair
        # both tasks' examples in one forward pass
        inputs = [data.inputs[i] for i in idx_t] + [source.inputs[i] for i in idx_s]
        feats = encoder(batch_to(encoder.prepare(inputs), ctx.device))
        f_t, f_s = feats[: len(idx_t)], feats[len(idx_t) :]
        loss_t = nn.functional.cross_entropy(head_t(f_t), targets_t[idx_t])
        loss_s = nn.functional.cross_entropy(head_s(f_s), targets_s[idx_s])
        loss = loss_t + lam * loss_s
        extra = strategy.regularizer(encoder, f_t)
        if extra is not None:
            loss = loss + extra
        return {"loss": loss, "target": loss_t.detach(), "source": loss_s.detach()}

    steps = strategy.steps_for(len(data))
    groups = strategy.param_groups(encoder, head_t)
    if not share_head:
        groups.append({"params": list(head_s.parameters()), "lr": cfg.head_lr})
    batches = PairedBatches(
        MiniBatches(len(data), cfg.batch_size, ctx.seed), MiniBatches(len(source), cfg.batch_size, ctx.seed + 1)
    )
    train_mode(encoder, cfg.norm_stats)
    head_t.train()
    head_s.train()
    summary = train(
        groups, loss_fn, batches,
        TrainConfig(steps=steps, weight_decay=cfg.weight_decay, time_budget=cfg.time_budget or None),
        description=ctx.describe(strategy.name), on_step=lambda step: strategy.on_step(step, steps),
    )
    summary["encoder_lr"] = strategy.encoder_lr(encoder)  # the rate used: settings say 0 for the encoder's own
    encoder = strategy.finish(encoder).eval()
    heads = {MAIN_TASK: head_t.eval(), SOURCE_TASK: head_s.eval()}
    return encoder, heads, {MAIN_TASK: classes_t, SOURCE_TASK: classes_s}, summary


class Joint(Finetune):
    name = "joint"
    Config = JointConfig
    needs_source = True

    def fit(self, encoder, data, ctx):
        source = require_source(self, data, ctx)
        share = set(source.classes) <= set(data.classes)
        encoder, heads, classes, summary = fit_two_tasks(
            self, encoder, data, source, ctx, lam=self.cfg.lam, share_head=share
        )
        model = AdaptedModel(
            encoder, {MAIN_TASK: heads[MAIN_TASK]}, {MAIN_TASK: classes[MAIN_TASK]}, encoder_tuned=True,
            strategy=self.name, strategy_params=self.params(),
        )
        model.info["train"] = {**summary, "shared_head": share, "source_examples": len(source)}
        return model


__all__ = ["Joint", "JointConfig", "PairedBatches", "SOURCE_TASK", "fit_two_tasks", "require_source"]
