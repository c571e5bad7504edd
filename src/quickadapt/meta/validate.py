"""Validation during meta-training: the same seeded episodes from the validation classes every
time, so the curve compares like with like and early stopping picks the best weights by it.

The validation sampler owns its generator and is rewound to its seed before each pass; the
learners' `predict` draws no random numbers. So validating consumes neither the training
sampler's nor torch's global RNG, and a resumed run validates (and stops) exactly as an
uninterrupted one."""
from __future__ import annotations

from typing import Sequence

import torch

from quickadapt.data.dataset import Dataset
from quickadapt.data.episodes import EpisodeSampler
from quickadapt.errors import BadInput
from quickadapt.evaluate.episodes import episode_accuracy
from quickadapt.meta.base import MetaLearner


def make_val_sampler(
    data: Dataset, classes: Sequence[str], *, n_way: int, k_shot: int, n_query: int, seed: int, prepare,
) -> tuple[EpisodeSampler | None, str | None]:
    """Validation episodes shaped like the training ones (no rotations): (sampler, None), or
    (None, why) when the validation classes cannot make them. Ways are capped at the number of
    validation classes, so high-way training (e.g. 60-way ProtoNets) still validates."""
    if not classes:
        return None, "no validation classes"
    if len(classes) < 2:  # an episode tells classes apart: one class is no episode
        return None, "1 validation class (validation episodes need 2)"
    try:
        sampler = EpisodeSampler(data, min(n_way, len(classes)), k_shot, n_query, seed, classes=classes,
                                 prepare=prepare)
    except BadInput as exc:  # too few classes or examples: training goes on, unvalidated
        return None, str(exc)
    return sampler, None


def val_accuracy(learner: MetaLearner, sampler: EpisodeSampler, episodes: int, device) -> float:
    """Mean query accuracy over the first `episodes` episodes of `sampler`'s seed, in eval mode
    (then back to train mode)."""
    sampler.generator.manual_seed(sampler.seed)  # the same episodes every time
    learner.eval()
    try:
        with torch.no_grad():  # methods that adapt at test time turn gradients back on inside
            return episode_accuracy(learner.predict, sampler, episodes, device=device)["accuracy"]
    finally:
        learner.train()


__all__ = ["make_val_sampler", "val_accuracy"]
