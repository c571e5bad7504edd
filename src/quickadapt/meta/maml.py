"""`maml`: Model-Agnostic Meta-Learning (Finn et al. 2017), second order.

The body and a linear head are adapted together by `inner_steps` SGD steps on each support
set; the query loss after adaptation is differentiated through those steps (create_graph).
The head starts at zero for every class (as in "zero trick" / unicorn-MAML, Ye & Chao 2022),
so a model meta-trained 5-way also adapts 20-way. `first_order=True` is FOMAML."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from quickadapt.data.episodes import Episode
from quickadapt.meta.base import (
    MetaLearner, adapt, batch_params, body_batched, body_one, body_params, expand_head, linear, mean_ce,
    resolve_path, task_ce,
)
from quickadapt.settings import Settings, bounded, count, positive


@dataclass(frozen=True)
class MAMLConfig(Settings):
    inner_steps: int = count(1)
    inner_lr: float = positive(0.4)  # Finn et al.'s Omniglot value
    test_steps: int = bounded(0, means={0: "inner_steps"})  # inner steps when adapting to a new task at test time (0: inner_steps)
    first_order: bool = False
    outer_lr: float = positive(1e-3)


class MAML(MetaLearner):
    name = "maml"
    Config = MAMLConfig
    per_task_body = True

    def __init__(self, encoder: nn.Module, cfg: MAMLConfig):
        super().__init__(encoder, cfg)
        # the head starts at zero for every class: a shared learned row would get no gradient
        # (shifting every class's row alike leaves the softmax unchanged), so none is learned
        self.register_buffer("head_weight", torch.zeros(1, encoder.embed_dim), persistent=False)
        self.register_buffer("head_bias", torch.zeros(1), persistent=False)

    def inner_lr(self):
        """A float, or per-parameter tensors (Meta-SGD)."""
        return self.cfg.inner_lr

    def initial(self, n_way: int) -> dict:
        return {**body_params(self.encoder), **expand_head(self.head_weight, self.head_bias, n_way)}

    def forward_one(self, p: dict, x: torch.Tensor) -> torch.Tensor:
        body = {k: v for k, v in p.items() if not k.startswith("head.")}
        return linear(p, body_one(self.encoder, body, x))

    def forward_batched(self, p: dict, x: torch.Tensor) -> torch.Tensor:
        body = {k: v for k, v in p.items() if not k.startswith("head.")}
        return linear(p, body_batched(self.encoder, body, x))

    def _adapt_tasks(self, batch: Episode, path: str, *, steps: int, first_order: bool, keep_graph: bool):
        """Per-task adapted parameters: a list of dicts (loop) or one dict of (T, ...) tensors (batched)."""
        n_way = int(batch.support_y.max()) + 1
        if path == "loop":
            out = []
            for t in range(batch.n_tasks):
                ep = batch.task(t)
                out.append(adapt(self.initial(n_way), lambda p: mean_ce(self.forward_one(p, ep.support_x), ep.support_y),
                                 steps=steps, lr=self.inner_lr(), first_order=first_order, keep_graph=keep_graph))
            return out
        p0 = batch_params(self.initial(n_way), batch.n_tasks)
        return adapt(p0, lambda p: task_ce(self.forward_batched(p, batch.support_x), batch.support_y),
                     steps=steps, lr=self.inner_lr(), first_order=first_order, keep_graph=keep_graph)

    def _query_logits(self, adapted, batch: Episode, path: str) -> torch.Tensor:
        if path == "loop":
            return torch.stack([self.forward_one(p, batch.query_x[t]) for t, p in enumerate(adapted)])
        return self.forward_batched(adapted, batch.query_x)

    def meta_loss(self, batch: Episode, path: str = "auto"):
        path = resolve_path(path, self.encoder, per_task_body=True)
        adapted = self._adapt_tasks(batch, path, steps=self.cfg.inner_steps, first_order=self.cfg.first_order, keep_graph=True)
        logits = self._query_logits(adapted, batch, path)
        return mean_ce(logits, batch.query_y), logits

    def predict(self, batch: Episode, path: str = "auto") -> torch.Tensor:
        path = resolve_path(path, self.encoder, per_task_body=True)
        with torch.enable_grad():
            adapted = self._adapt_tasks(batch, path, steps=self.cfg.test_steps or self.cfg.inner_steps, first_order=True, keep_graph=False)
        with torch.no_grad():
            return self._query_logits(adapted, batch, path)
