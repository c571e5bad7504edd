"""`reptile`: Reptile (Nichol et al. 2018). Each task's parameters take `inner_steps` plain SGD
steps on its support set; the meta-gradient is the mean of (initial - adapted) over the tasks,
applied by SGD with `outer_lr` (a step of 1 moves the init onto the tasks' mean solution).
No second derivatives, no graph through the inner loop."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from quickadapt.data.episodes import Episode
from quickadapt.meta.base import accuracy, mean_ce, resolve_path
from quickadapt.meta.maml import MAML
from quickadapt.settings import Settings, count, positive


@dataclass(frozen=True)
class ReptileConfig(Settings):
    inner_steps: int = count(5)
    inner_lr: float = positive(0.1)
    test_steps: int = count(10)
    outer_lr: float = positive(0.5)


class Reptile(MAML):
    name = "reptile"
    Config = ReptileConfig
    outer_optimizer = "sgd"

    def meta_loss(self, batch: Episode, path: str = "auto"):
        raise NotImplementedError("reptile has no differentiable meta-loss; use accumulate()")

    def accumulate(self, batch: Episode, path: str = "auto") -> dict:
        path = resolve_path(path, self.encoder, per_task_body=True)
        T = batch.n_tasks
        with torch.enable_grad():
            adapted = self._adapt_tasks(batch, path, steps=self.cfg.inner_steps, first_order=True, keep_graph=False)
        with torch.no_grad():
            logits = self._query_logits(adapted, batch, path)
            if path == "loop":  # the mean over tasks of each adapted copy
                mean = {k: torch.stack([p[k] for p in adapted]).mean(0) for k in adapted[0]}
            else:
                mean = {k: v.mean(0) for k, v in adapted.items()}
            targets = {name: mean[name] for name, _ in self.encoder.named_parameters()}
            for name, p in self.encoder.named_parameters():
                _add_grad(p, p - targets[name])
        return {"loss": float(mean_ce(logits, batch.query_y)), "accuracy": accuracy(logits, batch.query_y), "tasks": T}


def _add_grad(p: torch.Tensor, g: torch.Tensor) -> None:
    p.grad = g.detach().clone() if p.grad is None else p.grad + g.detach()
