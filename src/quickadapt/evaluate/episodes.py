"""Episodic evaluation: mean query accuracy over seeded episodes, with a 95% confidence interval."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from quickadapt.progress import progress_bar


def episode_accuracy(
    predict: Callable, sampler, episodes: int, *, batch: int = 16, device="cpu", description: str | None = None,
) -> dict:
    """`predict(stacked_episode) -> query logits (T, n_query, n_way)`; `sampler` draws the
    episodes (fixed by its seed). Returns mean accuracy, the 95% CI half-width (1.96 standard
    errors over episodes; None for a single episode) and the per-episode accuracies' count."""
    right: list[int] = []  # correct queries per episode, counted: float32 means write 0.408 as 0.40799999833
    with progress_bar(description, total=episodes) as advance:
        while len(right) < episodes:
            b = sampler.sample_batch(min(batch, episodes - len(right))).to(device)
            logits = predict(b)
            right += (logits.argmax(-1) == b.query_y).sum(-1).cpu().tolist()
            queries = b.query_y.shape[-1]  # the same in every episode
            advance(b.n_tasks)
    a = np.asarray(right) / queries
    # one episode has no spread to estimate: None, which JSON writes as null (NaN is not JSON)
    ci = float(1.96 * a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else None
    return {"accuracy": sum(right) / (queries * len(right)), "ci95": ci, "episodes": len(a)}


__all__ = ["episode_accuracy"]
