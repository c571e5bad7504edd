"""What every transfer strategy shares: its settings, the fit context, label encoding, batches."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from quickadapt.data.dataset import MODALITIES, Dataset
from quickadapt.errors import BadInput
from quickadapt.settings import build_config, config_to_dict


@dataclass
class FitContext:
    """Everything a strategy needs besides the encoder and the labelled task."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    source: Dataset | None = None  # a second labelled dataset (joint, multitask)
    progress: bool = True

    def describe(self, text: str) -> str | None:
        return text if self.progress else None


class Strategy:
    """A named way to adapt an encoder to a labelled task. Subclasses set `name`, `Config`
    (a frozen dataclass of settings with defaults that work untuned) and implement `fit`."""

    name: str = ""
    Config: type = None  # type: ignore[assignment]
    needs_source: bool = False
    tunes_encoder: bool = True  # False: the encoder stays frozen, so folds can share it
    modalities: tuple = MODALITIES  # the data it adapts to (check_modality, before any work)

    def __init__(self, **params):
        self.cfg = build_config(self.Config, params, f"strategy {self.name!r}")

    def params(self) -> dict:
        return config_to_dict(self.cfg)

    def check_modality(self, data: Dataset) -> None:
        """Refuse data of a kind this strategy does not adapt: adapt() asks before the encoder loads."""
        if data.modality not in self.modalities:
            raise BadInput(f"strategy {self.name!r} adapts only {' and '.join(self.modalities)} data; the data is "
                           f"{data.modality}{self.instead()}")

    def instead(self) -> str:
        """What to use instead on data of another kind (`check_modality`'s message)."""
        return ""

    def fit(self, encoder, data: Dataset, ctx: FitContext):
        """Adapt `encoder` to `data` (labelled); return an AdaptedModel."""
        raise NotImplementedError


def encode_labels(labels: np.ndarray, classes: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
    """Sorted class names and each label's index."""
    classes = sorted(set(labels.tolist())) if classes is None else list(classes)
    index = {c: i for i, c in enumerate(classes)}
    return classes, np.asarray([index[v] for v in labels.tolist()], dtype=np.int64)


class MiniBatches:
    """Shuffled minibatches of (inputs, targets) indices, reshuffled every pass by its own generator,
    so the order depends only on the seed."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n = n
        self.batch_size = max(1, min(batch_size, n))
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.generator).numpy()
        for start in range(0, self.n, self.batch_size):
            yield order[start : start + self.batch_size]

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)


def fit_frozen(strategy: Strategy, encoder, data: Dataset, ctx: FitContext, make_head):
    """A frozen encoder plus a head fitted in closed form on its (cached) features.
    `make_head(embed_dim, n_classes)` builds a head with a `fit(features, y)` method."""
    from quickadapt.model import MAIN_TASK, AdaptedModel

    classes, y = encode_labels(data.labels)
    encoder.to(ctx.device)
    model = AdaptedModel(
        encoder, {MAIN_TASK: make_head(encoder.embed_dim, len(classes))}, {MAIN_TASK: classes},
        encoder_tuned=False, strategy=strategy.name, strategy_params=strategy.params(),
    )
    feats = model.features(data.inputs, progress=ctx.describe("embedding"))
    model.heads[MAIN_TASK].fit(feats, y)
    return model.to(ctx.device)
