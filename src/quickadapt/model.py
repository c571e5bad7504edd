"""An adapted model in memory: an encoder plus one classifier head per task."""
from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
import torch
from torch import nn

from quickadapt.encoders.base import Encoder, embed
from quickadapt.errors import BadInput

MAIN_TASK = "main"


class AdaptedModel(nn.Module):
    """`heads[task]` maps encoder features to logits over `classes[task]`.

    `encoder_tuned` says whether the encoder's weights differ from its pretrained ones: if not,
    features come from the embedding cache and the artifact stores only the heads."""

    def __init__(
        self,
        encoder: Encoder,
        heads: dict[str, nn.Module],
        classes: dict[str, list[str]],
        *,
        encoder_tuned: bool,
        strategy: str,
        strategy_params: dict | None = None,
    ):
        super().__init__()
        if set(heads) != set(classes):
            raise ValueError("heads and classes must name the same tasks")
        self.encoder = encoder
        self.heads = nn.ModuleDict(heads)
        self.classes = {task: list(map(str, names)) for task, names in classes.items()}
        # weights that `create_encoder(name)` cannot rebuild must be stored: tuned here, randomly
        # initialised, or taken from another quickadapt model (built with pretrained=False)
        self.encoder_tuned = bool(encoder_tuned) or not encoder.is_pretrained
        self.strategy = strategy
        self.strategy_params = dict(strategy_params or {})
        self.threshold: float | None = None  # abstain below this confidence (calibrated at fit)
        self.info: dict = {}  # what fit measured: cv accuracy, baseline, timings

    @property
    def kind(self) -> str:
        return "multitask" if len(self.heads) > 1 else "classifier"

    @property
    def device(self) -> torch.device:
        for t in itertools.chain(self.parameters(), self.buffers()):
            return t.device
        return torch.device("cpu")

    def features(self, inputs: Sequence, *, batch_size: int | None = None, progress: str | None = None) -> np.ndarray:
        return embed(
            self.encoder, inputs, batch_size=batch_size, device=self.device, progress=progress, cache=not self.encoder_tuned
        )

    @torch.no_grad()
    def predict_proba(self, inputs: Sequence, *, task: str = MAIN_TASK, progress: str | None = None) -> np.ndarray:
        feats = torch.as_tensor(self.features(inputs, progress=progress), device=self.device)
        head = self.heads[task]
        head.eval()
        return torch.softmax(head(feats).float(), dim=-1).cpu().numpy()

    def predict(
        self, inputs: Sequence, *, task: str = MAIN_TASK, abstain: bool = False, none_label: str = "__none__",
        threshold: float | None = None, progress: str | None = None,
    ) -> tuple[list[str], np.ndarray]:
        """Predicted labels and their scores. With `abstain`, inputs whose top score is below the
        threshold (given, else the calibrated one) get `none_label`."""
        proba = self.predict_proba(inputs, task=task, progress=progress)
        names = np.asarray(self.classes[task], dtype=object)
        best = proba.argmax(1) if len(proba) else np.zeros(0, dtype=int)
        scores = proba.max(1) if len(proba) else np.zeros(0)
        labels = names[best].tolist()
        if abstain:
            t = self.threshold if threshold is None else threshold
            if t is None:
                raise BadInput(
                    "this model has no calibrated abstain threshold (it was fit without cross-validation, "
                    "or with one example per class); pass --threshold"
                )
            labels = [none_label if s < t else lab for lab, s in zip(labels, scores)]
        return labels, scores

    def forward(self, batch, task: str = MAIN_TASK) -> torch.Tensor:
        return self.heads[task](self.encoder(batch))
