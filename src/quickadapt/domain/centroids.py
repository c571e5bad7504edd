"""`centroids`: label the target by clustering it, started from the source classifier (the
pseudo-labelling step of SHOT, Liang et al. 2020, without its fine-tuning).

A source-only model (the usual recipe) gives every target example class probabilities. Each
class's target centroid is the probability-weighted mean of the target's features; then `iters`
rounds follow of relabelling every target example by its nearest centroid (cosine) and
re-averaging: k-means on the target, started from what the source taught. The classifier is the
final centroids (a cosine prototype head), so the target's own cluster structure decides, not a
boundary fitted to the source.

Cluster space: for feature vectors the raw values (an `mlp` trained on the source bends the
space towards the source; the raw target keeps its own clusters), for a pretrained encoder its
frozen embeddings, and otherwise (conv4 from scratch, whose raw pixels hold no such structure)
the source-only model's learned features. It aligns no features: the source/target discrepancy
is whatever the cluster space has."""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from quickadapt.domain.base import DeepConfig, DomainMethod, representation
from quickadapt.domain.source_only import SourceOnly
from quickadapt.encoders import create_encoder
from quickadapt.heads import PrototypeHead
from quickadapt.model import MAIN_TASK, AdaptedModel


@dataclass(frozen=True)
class CentroidsConfig(DeepConfig):
    iters: int = 3  # nearest-centroid relabelling rounds after the probability-weighted start


def cluster_target(features: np.ndarray, proba: np.ndarray, iters: int) -> np.ndarray:
    """Unit-norm class centroids (n_classes, dim) of `features`: weighted by `proba` first,
    then `iters` rounds of hard nearest-centroid labels. A class that loses every member keeps
    its previous centroid rather than vanishing."""
    x = features / (np.linalg.norm(features, axis=1, keepdims=True) + 1e-12)
    weights = proba
    centroids = np.zeros((proba.shape[1], x.shape[1]))
    for _ in range(iters + 1):
        mass = weights.sum(0)
        new = weights.T @ x / np.maximum(mass, 1e-12)[:, None]
        keep = mass > 0
        centroids[keep] = new[keep] / (np.linalg.norm(new[keep], axis=1, keepdims=True) + 1e-12)
        weights = np.eye(proba.shape[1])[(x @ centroids.T).argmax(1)]
    return centroids


class Centroids(DomainMethod):
    name = "centroids"
    Config = CentroidsConfig

    def fit(self, encoder, source, target, ctx):
        deep = {f.name: getattr(self.cfg, f.name) for f in fields(DeepConfig)}
        base = SourceOnly(**deep).fit(encoder, source, target, ctx)
        _, proba = representation(base, target.inputs)
        if source.modality == "features":
            space = create_encoder("mlp", in_dim=np.asarray(source.inputs).shape[1], depth=0)  # the identity
            feats, tuned = np.asarray(target.inputs, dtype=np.float64), False
        else:  # a pretrained encoder's frozen embeddings, or the features learned from scratch
            space, tuned = base.encoder, base.encoder_tuned
            feats = np.asarray(base.features(target.inputs), dtype=np.float64)
        centroids = cluster_target(feats, proba, self.cfg.iters)
        classes = base.classes[MAIN_TASK]
        head = PrototypeHead(space.embed_dim, len(classes))
        head.prototypes.copy_(torch.as_tensor(centroids, dtype=torch.float32))
        model = AdaptedModel(space, {MAIN_TASK: head.eval()}, {MAIN_TASK: classes}, encoder_tuned=tuned,
                             strategy=f"domain:{self.name}", strategy_params=self.params())
        relabelled = (feats @ centroids.T).argmax(1) != proba.argmax(1)  # cosine argmax: norms don't matter
        model.info["train"] = {**base.info["train"], "target_relabelled": float(relabelled.mean())}
        return model.eval()
