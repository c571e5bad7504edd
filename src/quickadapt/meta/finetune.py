"""Test-time fine-tuning on each episode's support set (the "F" of P>M>F, Hu et al. 2022).

Per episode: the encoder's weights are reset to the model's and take `finetune_steps` Adam
steps on the support set alone, with P>M>F's loss: the head is the support prototypes,
recomputed from the current weights at every step (logits -scale * squared distance, as
ProtoNet), and the pseudo-queries are augmented views of the same support examples
(`Encoder.augment`: shifted images, sentences with some words hidden; dropout on). Without the
views a 1-shot loss would be zero and nothing learnt; with a fixed linear head the body would
drift away from it (measured on Omniglot: 73 % by prototypes fell to 28 % after 3 steps). Then
the queries are classified by the fine-tuned prototypes (with `views`, each image's features
averaged over it and that many random views: meta/views.py). Queries never influence the weights.

The model's own encoder is never trained: one working copy is made up front and its weights are
reloaded from a snapshot before every episode, so nothing leaks between episodes. The
augmentations draw from the finetuner's own seeded generator (dropout from torch's, seeded by
the caller), so the same seed gives the same accuracy."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from quickadapt.data.episodes import Episode
from quickadapt.meta.protonet import prototypes, sq_distances
from quickadapt.meta.views import view_mean_features
from quickadapt.train import train_mode
from quickadapt.settings import Settings, count, positive


LR_FRACTION = 0.1


@dataclass(frozen=True)
class FinetuneConfig(Settings):
    finetune_steps: int = count(20)
    # None: a tenth of the encoder's fine-tuning rate (conv4 1e-4, minilm 3e-6). A few steps on
    # one example per class want a gentle rate: on Omniglot validation episodes (5-way 1-shot, a
    # briefly meta-trained conv4, 20 steps) 1e-4 gave 86 % against 81 % at 1e-3 and without any;
    # on CLINC's validation domains (10 steps) frozen MiniLM lost 2 and 4 points at 3e-5 and 1e-4
    finetune_lr: float | None = positive(None)


class EpisodeFinetuner:
    """`predict(batch)` -> query logits (T, n_query, n_way), fine-tuning from the model's weights per task."""

    def __init__(self, encoder: torch.nn.Module, cfg: FinetuneConfig, *, scale: float = 1.0, seed: int = 0,
                 views: int = 0):
        self.cfg = cfg
        self.views = int(views)  # images: classify by features averaged over this many random views too
        self.generator = torch.Generator().manual_seed(int(seed))
        self.scale = float(scale)
        self.lr = float(cfg.finetune_lr or LR_FRACTION * encoder.finetune_lr)
        self.work = copy.deepcopy(encoder).eval()
        self.snapshot = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
        # token lookup tables stay frozen: a few support sentences touch a handful of their rows,
        # yet Adam would update all of them (MiniLM's 30k x 384 words are half its weights and
        # most of a step's time); conv4 and other image bodies have none
        frozen = {id(p) for m in self.work.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
        self.tuned = [p for p in self.work.parameters() if id(p) not in frozen]

    def predict(self, batch: Episode) -> torch.Tensor:
        return torch.stack([self.task_logits(batch.task(t)) for t in range(batch.n_tasks)])

    def task_logits(self, ep: Episode) -> torch.Tensor:
        body = self.work
        body.load_state_dict(self.snapshot)  # every episode starts from the model's weights
        n_way, n = int(ep.support_y.max()) + 1, len(ep.support_y)
        optimizer = torch.optim.Adam([p for p in self.tuned if p.requires_grad], lr=self.lr)  # fresh state
        train_mode(body, "frozen")  # dropout on; a 5-example support set would make batch statistics noise
        with torch.enable_grad():
            for _ in range(self.cfg.finetune_steps):
                view = body.augment(ep.support_x, self.generator)
                feats = body(torch.cat([ep.support_x, view]))  # one forward: the support and its views
                protos = prototypes(feats[:n], ep.support_y, n_way)
                loss = F.cross_entropy(-self.scale * sq_distances(feats[n:], protos), ep.support_y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        body.eval()
        with torch.no_grad():
            support, query = self.features(ep.support_x), self.features(ep.query_x)
            return -self.scale * sq_distances(query, prototypes(support, ep.support_y, n_way))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The fine-tuned body's features of x, each averaged over its random views if asked."""
        if not self.views:
            return self.work(x)
        return view_mean_features(self.work, x, self.views, self.generator, x.device)


__all__ = ["FinetuneConfig", "EpisodeFinetuner"]
