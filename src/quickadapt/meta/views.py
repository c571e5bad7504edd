"""Test-time augmentation for fixed-feature episodes: an image's features are the mean of its
own and those of `views` random affine views of it (data/episodes.py `jitter_images`, the
change `augment=true` applies to meta-training images: up to 10 degrees of rotation, 10 % of
scale and of shift). Each image is averaged on its own, support and query alike, so a query's
features never depend on the other inputs of its episode (nothing is transductive).

Measured by hand on Omniglot validation (Early_Aramaic, 600 episodes, the best 30-minute
ProtoNet of bench/meta_omniglot.py, 8 views): 5-way 1-shot 96.1 -> 96.6 %, and with 16 views
20-way 1-shot 86.2 -> 87.2 %."""
from __future__ import annotations

from typing import Sequence

import torch

from quickadapt.data.episodes import jitter_images, prepare_all
from quickadapt.errors import BadInput


@torch.no_grad()
def view_mean_features(encoder, x: torch.Tensor, views: int, generator: torch.Generator, device,
                       batch_size: int = 512) -> torch.Tensor:
    """(n, D) features on `device` of the (n, C, H, W) images `x`, each the mean over the image
    and `views` jittered copies drawn from `generator` (on the CPU, so any device sees the same
    views); the encoder runs in eval mode, `batch_size` images at a time."""
    was_training = encoder.training
    encoder.eval()
    total = None
    for view in range(int(views) + 1):
        chunks = []
        for start in range(0, len(x), batch_size):
            batch = x[start:start + batch_size].cpu()
            if view:  # view 0 is the image itself
                batch = jitter_images(batch, generator)
            chunks.append(encoder(batch.to(device)).float())
        feats = torch.cat(chunks)
        total = feats if total is None else total + feats
    encoder.train(was_training)
    return total / (int(views) + 1)


def embed_views(encoder, inputs: Sequence, views: int, *, seed: int, device, batch_size: int = 512) -> torch.Tensor:
    """(n, D) features of `inputs` (on the CPU), each the mean over the input and `views` jittered copies."""
    x = prepare_all(inputs, encoder.prepare_tensor)
    if x.dim() != 4 or not x.is_floating_point():
        raise BadInput("views change images (n, C, H, W); these inputs are not images (leave views at 0)")
    generator = torch.Generator().manual_seed(int(seed))
    return view_mean_features(encoder, x, views, generator, device, batch_size).cpu()


__all__ = ["embed_views", "view_mean_features"]
