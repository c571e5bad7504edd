"""`source-only`: the baseline every method must beat. The same encoder, head, steps and
batches as the deep methods (target batches are drawn but unused), with no transfer loss."""
from __future__ import annotations

from quickadapt.domain.base import DeepMethod


class SourceOnly(DeepMethod):
    name = "source-only"
