"""Synthetic but realistic distribution shifts of real data, for domain adaptation tests and
benchmarks."""
from __future__ import annotations

import numpy as np


def noisy_text(text: str, rng: np.random.Generator) -> str:
    """Typos (swapped neighbouring letters), a dropped and a swapped word. CLINC-style text has
    no case or punctuation to perturb, so those would shift nothing."""
    words = text.split()
    if len(words) > 3:
        words.pop(int(rng.integers(len(words))))
        i = int(rng.integers(len(words) - 1))
        words[i], words[i + 1] = words[i + 1], words[i]
    out = []
    for w in words:
        if len(w) > 3 and rng.random() < 0.4:
            j = int(rng.integers(len(w) - 1))
            w = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
        out.append(w)
    return " ".join(out)
