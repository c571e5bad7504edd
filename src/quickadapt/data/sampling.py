"""Drawing few-shot subsets from a labelled dataset."""
from __future__ import annotations

import numpy as np

from quickadapt.data.dataset import Dataset


def sample_per_class(data: Dataset, k: int, seed: int) -> Dataset:
    """`k` examples of every class (all of a class's examples when it has fewer), drawn with `seed`."""
    rng = np.random.default_rng(seed)
    idx: list[int] = []
    for label in data.classes:
        members = np.flatnonzero(data.labels == label)
        idx.extend(rng.choice(members, size=min(k, len(members)), replace=False).tolist())
    return data.subset(sorted(idx))
