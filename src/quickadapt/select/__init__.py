"""Transferability scores: which pretrained encoder to transfer, judged from the user's labelled
examples without training on them (docs/select.md).

`rank(data, encoders=[...])` embeds the examples with each candidate and ranks them; the scores
are plain functions of (features or source probabilities, labels), registered by name in
SCORES. Explicit imports, each registering its score."""
from quickadapt.select.base import SCORES, transferability_score
from quickadapt.select.hscore import hscore
from quickadapt.select.leep import gaussian_mixture_proba, leep, nleep
from quickadapt.select.logme import logme
from quickadapt.select.nce import nce
from quickadapt.select.rank import DEFAULT_SCORES, rank

__all__ = ["SCORES", "DEFAULT_SCORES", "gaussian_mixture_proba", "hscore", "leep", "logme", "nce", "nleep", "rank",
           "transferability_score"]
