"""`protonet`: Prototypical Networks (Snell et al. 2017). Each class is the mean of its support
embeddings; a query's logits are minus its squared Euclidean distances to them. No inner
loop: the body runs once per meta-batch on every support and query image."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from quickadapt.data.episodes import Episode
from quickadapt.meta.base import MetaLearner, mean_ce, resolve_path
from quickadapt.settings import Settings, positive


@dataclass(frozen=True)
class ProtoNetConfig(Settings):
    outer_lr: float = positive(1e-3)
    # logits are -scale * squared distance. conv4's raw features need none; unit-norm text
    # features get 5 / (normalised layers) from meta/start.py, a cosine temperature of 10
    scale: float = positive(1.0)


def prototypes(fs: torch.Tensor, ys: torch.Tensor, n_way: int) -> torch.Tensor:
    """Class means of support features: (..., n, D), labels (..., n) -> (..., n_way, D)."""
    onehot = F.one_hot(ys, n_way).to(fs.dtype)
    return (onehot.transpose(-1, -2) @ fs) / onehot.sum(-2).unsqueeze(-1)


def sq_distances(fq: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    return (fq.unsqueeze(-2) - protos.unsqueeze(-3)).pow(2).sum(-1)


class ProtoNet(MetaLearner):
    name = "protonet"
    Config = ProtoNetConfig

    def _logits(self, batch: Episode, path: str) -> torch.Tensor:
        n_way = int(batch.support_y.max()) + 1
        if path == "loop":
            out = []
            for t in range(batch.n_tasks):
                fs, fq = self.encoder(batch.support_x[t]), self.encoder(batch.query_x[t])
                out.append(-self.cfg.scale * sq_distances(fq, prototypes(fs, batch.support_y[t], n_way)))
            return torch.stack(out)
        fs, fq = self.features(batch.support_x), self.features(batch.query_x)
        return -self.cfg.scale * sq_distances(fq, prototypes(fs, batch.support_y, n_way))

    def meta_loss(self, batch: Episode, path: str = "auto"):
        logits = self._logits(batch, resolve_path(path, self.encoder))
        return mean_ce(logits, batch.query_y), logits

    @torch.no_grad()
    def predict(self, batch: Episode, path: str = "auto") -> torch.Tensor:
        return self._logits(batch, resolve_path(path, self.encoder))
