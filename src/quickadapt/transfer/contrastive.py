"""`contrastive`: SetFit-style pair fine-tuning (Tunstall et al. 2022), then a logistic head.

From K examples per class it builds many pairs: positive (same label, target similarity 1) and
negative (different labels, target 0), balanced, drawn deterministically from the seed. The encoder
is fine-tuned so that the cosine similarity of each pair matches its target (CosineSimilarityLoss:
MSE), which pulls each class together and pushes classes apart; then a logistic-regression head is
fitted on the tuned encoder's features. Both sides of a batch of pairs go through the encoder in a
single forward pass."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from quickadapt.encoders.base import batch_to, embed
from quickadapt.errors import BadInput
from quickadapt.heads import LogisticHead
from quickadapt.model import MAIN_TASK, AdaptedModel
from quickadapt.train import TrainConfig, check_norm_stats, train, train_mode
from quickadapt.transfer.base import MiniBatches, Strategy, encode_labels
from quickadapt.settings import count, inverse_strength, no_limit, own_rate, Settings


@dataclass(frozen=True)
class ContrastiveConfig(Settings):
    pairs_per_example: int = count(4)  # half positive, half negative; more hurt on CLINC150 5-shot
    epochs: int = count(1)  # passes over the pairs (1 is SetFit's default)
    batch_size: int = count(16)  # pairs per step (32 encoder inputs)
    lr: float = own_rate()  # encoder learning rate; 0 = the encoder's own default (encoder.finetune_lr)
    weight_decay: float = 0.01
    max_steps: int = no_limit()  # cap on optimiser steps, 0 = none
    C: float = inverse_strength(10.0)  # inverse L2 strength of the logistic head fitted afterwards
    time_budget: float = no_limit(0.0)  # seconds for the pair fine-tuning, 0 = none
    norm_stats: str = "auto"  # BatchNorm statistics while training, as for finetune (train_mode)

    def __post_init__(self):
        super().__post_init__()
        check_norm_stats(self.norm_stats)


def make_pairs(y: np.ndarray, pairs_per_example: int, seed: int) -> np.ndarray:
    """(n_pairs, 3) int array of (i, j, same): for every example, `ceil(p/2)` partners with its label
    and `floor(p/2)` with another, drawn uniformly (a class with one example pairs with itself)."""
    rng = np.random.default_rng(seed)
    by_class = {c: np.flatnonzero(y == c) for c in np.unique(y)}
    n_pos, n_neg = -(-pairs_per_example // 2), pairs_per_example // 2
    rows = []
    for i, c in enumerate(y):
        same = by_class[c][by_class[c] != i]
        if len(same) == 0:
            same = np.array([i])
        other = np.flatnonzero(y != c)
        for j in rng.choice(same, size=n_pos):
            rows.append((i, j, 1))
        if len(other):
            for j in rng.choice(other, size=n_neg):
                rows.append((i, j, 0))
    pairs = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
    return pairs[rng.permutation(len(pairs))]


class Contrastive(Strategy):
    name = "contrastive"
    Config = ContrastiveConfig

    def fit(self, encoder, data, ctx):
        cfg = self.cfg
        classes, y = encode_labels(data.labels)
        if not any(True for _ in encoder.parameters()):  # mlp with depth=0: nothing it could tune
            raise BadInput(f"strategy {self.name!r} tunes the encoder, and this {encoder.name} has no weights to tune; "
                           "use probe, or give the encoder layers (mlp: encoder.depth=1 or more)")
        encoder.to(ctx.device).requires_grad_(True)
        pairs = make_pairs(y, cfg.pairs_per_example, ctx.seed)
        inputs = data.inputs
        targets = torch.as_tensor(pairs[:, 2], dtype=torch.float32, device=ctx.device)

        def loss_fn(idx):
            left, right = pairs[idx, 0], pairs[idx, 1]
            batch = batch_to(encoder.prepare([inputs[i] for i in np.concatenate([left, right])]), ctx.device)
            feats = encoder(batch)
            u, v = feats[: len(idx)], feats[len(idx) :]
            cos = nn.functional.cosine_similarity(u, v, dim=-1)
            return nn.functional.mse_loss(cos, targets[idx])

        batches = MiniBatches(len(pairs), cfg.batch_size, ctx.seed)
        steps = cfg.epochs * len(batches)
        if cfg.max_steps:
            steps = min(steps, cfg.max_steps)
        train_mode(encoder, cfg.norm_stats)
        lr = cfg.lr or getattr(encoder, "finetune_lr", 1e-4)
        summary = train(
            [{"params": list(encoder.parameters()), "lr": lr}],
            loss_fn, batches,
            TrainConfig(steps=steps, weight_decay=cfg.weight_decay, time_budget=cfg.time_budget or None),
            description=ctx.describe(self.name),
        )
        encoder.eval()
        feats = embed(encoder, inputs, device=ctx.device, progress=ctx.describe("embedding"), cache=False)
        head = LogisticHead(encoder.embed_dim, len(classes), C=cfg.C).fit(feats, y)
        model = AdaptedModel(
            encoder, {MAIN_TASK: head.to(ctx.device).eval()}, {MAIN_TASK: classes}, encoder_tuned=True,
            strategy=self.name, strategy_params=self.params(),
        )
        model.info["train"] = {**summary, "pairs": len(pairs), "encoder_lr": lr}
        return model


__all__ = ["Contrastive", "ContrastiveConfig", "make_pairs"]
