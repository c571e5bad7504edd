"""What one request may ask of the service, so that a single client cannot exhaust its memory."""
from __future__ import annotations

from dataclasses import dataclass

from quickadapt.errors import BadInput


@dataclass(frozen=True)
class Limits:
    """max_body_mb: a request's body (base64 images are a third larger than their files);
    max_inputs: inputs one predict call may send; max_examples: examples one task may hold;
    max_tasks: tasks created over HTTP the service may hold at once (each keeps its examples and head)."""
    max_body_mb: float = 32.0
    max_inputs: int = 1000
    max_examples: int = 10000
    max_tasks: int = 1000

    def __post_init__(self):
        if not self.max_body_mb > 0:
            raise BadInput(f"--max-body-mb must be above 0, got {self.max_body_mb}")
        for name in ("max_inputs", "max_examples", "max_tasks"):
            if getattr(self, name) < 1:
                raise BadInput(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)
