"""`anil`: Almost No Inner Loop (Raghu et al. 2020): MAML whose inner loop adapts the head
only. Body features are computed once per meta-batch (one forward for all tasks); only the
linear head is adapted per task, second order through the head steps by default."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from quickadapt.data.episodes import Episode
from quickadapt.meta.base import adapt, batch_params, expand_head, linear, mean_ce, resolve_path, task_ce
from quickadapt.meta.maml import MAML, MAMLConfig
from quickadapt.settings import count


@dataclass(frozen=True)
class ANILConfig(MAMLConfig):
    inner_steps: int = count(5)
    test_steps: int = 10
    inner_lr: float = 0.5


class ANIL(MAML):
    name = "anil"
    Config = ANILConfig
    per_task_body = False  # the body runs once per meta-batch; only the head adapts per task

    def _head_adapt(self, fs, ys, *, steps, first_order, keep_graph, batched: bool):
        n_way = int(ys.max()) + 1
        p0 = expand_head(self.head_weight, self.head_bias, n_way)
        if batched:
            p0 = batch_params(p0, fs.shape[0])
        loss = (lambda p: task_ce(linear(p, fs), ys)) if batched else (lambda p: mean_ce(linear(p, fs), ys))
        return adapt(p0, loss, steps=steps, lr=self.cfg.inner_lr, first_order=first_order, keep_graph=keep_graph)

    def _logits(self, batch: Episode, path: str, *, steps, first_order, keep_graph):
        fs, fq = self.features(batch.support_x), self.features(batch.query_x)  # the body runs once per set
        if not keep_graph:
            fs, fq = fs.detach(), fq.detach()
        if path == "loop":
            return torch.stack([
                linear(self._head_adapt(fs[t], batch.support_y[t], steps=steps, first_order=first_order,
                                        keep_graph=keep_graph, batched=False), fq[t])
                for t in range(batch.n_tasks)
            ])
        head = self._head_adapt(fs, batch.support_y, steps=steps, first_order=first_order, keep_graph=keep_graph, batched=True)
        return linear(head, fq)

    def meta_loss(self, batch: Episode, path: str = "auto"):
        path = resolve_path(path, self.encoder)
        logits = self._logits(batch, path, steps=self.cfg.inner_steps, first_order=self.cfg.first_order, keep_graph=True)
        return mean_ce(logits, batch.query_y), logits

    def predict(self, batch: Episode, path: str = "auto") -> torch.Tensor:
        path = resolve_path(path, self.encoder)
        with torch.no_grad():
            fs, fq = self.features(batch.support_x), self.features(batch.query_x)
        with torch.enable_grad():
            head = self._head_adapt(fs, batch.support_y, steps=self.cfg.test_steps, first_order=True, keep_graph=False, batched=True)
        with torch.no_grad():
            return linear(head, fq)
