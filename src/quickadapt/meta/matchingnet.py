"""`matchingnet`: Matching Networks (Vinyals et al. 2016), without full-context embeddings.
A query attends over the support set by softmax of scaled cosine similarity; its class
probabilities are the attention mass on each class's support examples."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from quickadapt.data.episodes import Episode
from quickadapt.meta.base import MetaLearner, mean_ce, resolve_path
from quickadapt.settings import Settings, positive


@dataclass(frozen=True)
class MatchingNetConfig(Settings):
    scale: float = positive(10.0)  # inverse temperature on cosine similarities
    outer_lr: float = positive(1e-3)


class MatchingNet(MetaLearner):
    name = "matchingnet"
    Config = MatchingNetConfig

    def _log_probs(self, fs, ys, fq, n_way):
        sim = F.normalize(fq, dim=-1) @ F.normalize(fs, dim=-1).transpose(-1, -2)  # (..., nq, ns)
        attn = torch.softmax(self.cfg.scale * sim, dim=-1)
        probs = attn @ F.one_hot(ys, n_way).to(attn.dtype)
        return torch.log(probs.clamp_min(1e-8))

    def _logits(self, batch: Episode, path: str) -> torch.Tensor:
        n_way = int(batch.support_y.max()) + 1
        if path == "loop":
            return torch.stack([
                self._log_probs(self.encoder(batch.support_x[t]), batch.support_y[t], self.encoder(batch.query_x[t]), n_way)
                for t in range(batch.n_tasks)
            ])
        return self._log_probs(self.features(batch.support_x), batch.support_y, self.features(batch.query_x), n_way)

    def meta_loss(self, batch: Episode, path: str = "auto"):
        logits = self._logits(batch, resolve_path(path, self.encoder))
        return mean_ce(logits, batch.query_y), logits  # cross-entropy of log-probabilities = their NLL

    @torch.no_grad()
    def predict(self, batch: Episode, path: str = "auto") -> torch.Tensor:
        return self._logits(batch, resolve_path(path, self.encoder))
