"""Office-Caltech10 SURF features (Gong et al. 2012) from their `.mat` files, with the fixed
preprocessing of the domain adaptation benchmark: each sample L1-normalised, then z-scored per
domain with that domain's own statistics. The data has no clear licence, so it is not shipped in
the package: it lives in the repository's bench data (bench/data/office_caltech10_surf/)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from quickadapt.data.dataset import Dataset
from quickadapt.errors import BadInput

DOMAINS = {"A": "amazon", "C": "Caltech10", "D": "dslr", "W": "webcam"}


def preprocess_surf(x: np.ndarray) -> np.ndarray:
    """L1-normalise each row, then z-score each column with this domain's own statistics."""
    x = np.asarray(x, dtype=np.float64)
    x = x / np.maximum(np.abs(x).sum(1, keepdims=True), 1e-12)
    std = x.std(0)
    return ((x - x.mean(0)) / np.where(std > 1e-12, std, 1.0)).astype(np.float32)


def load_surf_mat(path: str | Path, *, name: str | None = None) -> Dataset:
    """One domain's `.mat` (arrays `fts`, n x 800, and `labels`, n x 1) as a preprocessed Dataset."""
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    m = loadmat(str(path))
    if "fts" not in m or "labels" not in m:
        raise BadInput(f"{path}: expected arrays 'fts' and 'labels'")
    labels = np.asarray(m["labels"]).ravel().astype(int)
    return Dataset("features", preprocess_surf(m["fts"]), labels.astype(str), name=name or path.stem)


def load_office_caltech(domain: str, root: str | Path) -> Dataset:
    """Domain `A`, `C`, `D` or `W` (or its full name) from the folder holding the four `.mat` files."""
    full = DOMAINS.get(domain.upper(), domain) if len(domain) == 1 else domain
    if full not in DOMAINS.values():
        raise BadInput(f"unknown Office-Caltech domain {domain!r}: choose one of {', '.join(DOMAINS)}")
    return load_surf_mat(Path(root) / f"{full}_SURF_L10.mat", name=full)
