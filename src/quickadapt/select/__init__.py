"""Choosing for the user: which pretrained encoder to transfer (transferability scores,
`rank`; docs/select.md) and which transfer strategy suits their examples (`--strategy auto`,
strategy.py; docs/fit.md).

`rank(data, encoders=[...])` embeds the examples with each candidate and ranks them; the scores
are plain functions of (features or source probabilities, labels), registered by name in
SCORES. Explicit imports, each registering its score."""
from quickadapt.select.base import SCORES, transferability_score
from quickadapt.select.hscore import hscore
from quickadapt.select.leep import gaussian_mixture_proba, leep, nleep
from quickadapt.select.logme import logme
from quickadapt.select.nce import nce
from quickadapt.select.rank import DEFAULT_SCORES, rank
from quickadapt.select.strategy import AUTO, AutoConfig, auto_candidates, auto_settings, choose_strategy

__all__ = ["SCORES", "DEFAULT_SCORES", "gaussian_mixture_proba", "hscore", "leep", "logme", "nce", "nleep", "rank",
           "transferability_score", "AUTO", "AutoConfig", "auto_candidates", "auto_settings", "choose_strategy"]
