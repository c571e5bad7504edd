"""Real shifted data for the domain adaptation tests: Office-Caltech10 SURF features from the
repository's bench data (bench/data/office_caltech10_surf, see its PROVENANCE.md)."""
from functools import lru_cache
from pathlib import Path

from quickadapt.data.office_caltech import load_office_caltech

SURF_ROOT = Path(__file__).resolve().parents[1] / "bench" / "data" / "office_caltech10_surf"


@lru_cache(maxsize=None)
def surf(domain: str):
    """Domain A, C, D or W, preprocessed (L1 per sample, z-scored per domain), labelled."""
    return load_office_caltech(domain, SURF_ROOT)


@lru_cache(maxsize=None)
def rotated_digits(angle: float = 35.0):
    """scikit-learn's real handwritten digits as 64 pixel features in [0, 1]: a seeded 900 as the
    source, the other 897 rotated by `angle` degrees as the target (labelled, for the tests)."""
    import numpy as np
    from scipy.ndimage import rotate
    from sklearn.datasets import load_digits

    from quickadapt.data.dataset import Dataset

    d = load_digits()
    order = np.random.default_rng(0).permutation(len(d.target))
    s, t = order[:900], order[900:]
    target = np.stack([rotate(im, angle, reshape=False, order=1) for im in d.images[t]])
    source = Dataset("features", (d.images[s].reshape(len(s), -1) / 16).astype(np.float32), d.target[s], name="digits")
    shifted = Dataset("features", (target.reshape(len(t), -1) / 16).astype(np.float32), d.target[t], name=f"digits-rot{angle:g}")
    return source, shifted


def faded_onto_a_one():
    """Rotated digits faded to a tenth over three times the source's mean "1": every input looks
    alike and far from the source, and source-only answers all of them with one class."""
    import numpy as np

    from quickadapt.data.dataset import Dataset

    source, rotated = rotated_digits(35.0)
    one = np.asarray(source.inputs)[source.labels == "1"].mean(0)
    faded = (0.1 * np.asarray(rotated.inputs) + 3 * one).astype(np.float32)
    return source, Dataset("features", faded, rotated.labels, name="digits-faded")
