"""The interface every encoder shares, and embedding with an on-disk cache."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn


class Encoder(nn.Module):
    """Maps raw inputs of one modality to `embed_dim`-d features.

    `prepare(inputs)` turns raw inputs (texts, image paths/arrays, feature rows) into a CPU batch;
    `forward(batch)` gives (n, embed_dim) features. `name` and `settings` rebuild the module through
    the registry (`create_encoder(name, **settings)`); `layer_groups()` lists blocks from input to
    output so strategies can freeze or rate-limit the lower ones. `preprocess_id()` names
    everything that changes features besides the weights (for the embedding cache)."""

    name: str = ""
    modality: str = ""
    embed_dim: int = 0
    finetune_lr: float = 1e-3  # default encoder learning rate when fine-tuned (random-init nets)
    is_pretrained: bool = False  # set by create_encoder: weights are rebuilt by name, not stored
    embed_batch_size: int = 64  # inference batch that runs fastest on CPU for this architecture

    def __init__(self):
        super().__init__()
        self.settings: dict[str, Any] = {}

    def prepare(self, inputs: Sequence) -> Any:
        raise NotImplementedError

    def prepare_tensor(self, inputs: Sequence) -> torch.Tensor:
        """`prepare` as one tensor whose rows are the inputs, which `forward` also accepts:
        episodes index, stack and concatenate it. Images and feature rows already are one."""
        return self.prepare(inputs)

    def augment(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A random second view of `prepare_tensor` rows, for fine-tuning on a few examples
        (test-time fine-tuning in meta/finetune.py). Image batches (n, C, H, W) are shifted by
        up to an eighth of their side, edge pixels repeated; other inputs come back unchanged."""
        if batch.dim() == 4 and batch.is_floating_point():
            return random_shift(batch, generator)
        return batch

    def forward_features(self, batch) -> torch.Tensor:
        return self(batch)

    def note_unread_inputs(self, inputs: Sequence) -> None:
        """Say (a note) when this encoder cannot read part of some inputs (cut to fit, or unknown
        to it); nothing by default."""

    def read_alike(self, inputs: Sequence) -> dict[int, bytes]:
        """Inputs this encoder reads as one though they differ, by position: a key each, the
        same for inputs read alike (cross-validation holds them out together); none by default."""
        return {}

    @property
    def fits_inputs(self) -> bool:
        """Whether `fit_inputs` would still learn something (then each cross-validation fold
        fits its own copy, so the examples it holds out stay unseen)."""
        return False

    def fit_inputs(self, inputs: Sequence) -> None:
        """Learn from the training inputs alone (no labels), before any training, what reading
        them needs; nothing for most encoders (mlp standardises each feature)."""

    def layer_groups(self) -> list[nn.Module]:
        return [self]

    def preprocess_id(self) -> str:
        return repr(sorted(self.settings.items()))


def random_shift(x: torch.Tensor, generator: torch.Generator, fraction: float = 0.125) -> torch.Tensor:
    """Each image of x (n, C, H, W) moved by its own random offset of up to `fraction` of its side."""
    n, _, h, w = x.shape
    pad = max(1, int(round(min(h, w) * fraction)))
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="replicate")
    dy, dx = (torch.randint(0, 2 * pad + 1, (2, n), generator=generator)).tolist()
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def batch_to(batch, device: torch.device | str):
    """Move a tensor or a dict of tensors to `device`."""
    if isinstance(batch, dict):
        return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    if torch.is_tensor(batch):
        return batch.to(device)
    return batch


def weights_hash(module: nn.Module) -> str:
    """A sha256 over every parameter and buffer: identifies the exact weights (for caching)."""
    import hashlib

    h = hashlib.sha256()
    for key, t in sorted(module.state_dict().items()):
        h.update(key.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def state_version(module: nn.Module) -> int:
    """A count that grows whenever any tensor of `module` changes in place."""
    return sum(t._version for t in module.state_dict(keep_vars=True).values())


def encoder_fingerprint(encoder: "Encoder", *, with_config: bool = True) -> str:
    """What the features depend on: the exact weights, the preprocessing and a Hugging Face
    folder's config.json (for the embedding cache, and to tell at loading that a model's rebuilt
    encoder is the one it was fit on). Hashing ~100 MB of weights takes a moment, so it is
    remembered until any tensor changes in place (optimiser steps and load_state_dict bump each
    tensor's _version counter). `with_config=False`: the fingerprint before config.json was part
    of it, which models written then record (an edited num_attention_heads or hidden_act, the
    same weights' shapes, was served the old config's cached features and passed their check)."""
    version = state_version(encoder)
    memo = getattr(encoder, "_weights_hash_memo", None)
    if memo is None or memo[0] != version:
        memo = (version, weights_hash(encoder))
        encoder._weights_hash_memo = memo
    config = f"|config {encoder.config_hash}" if with_config and getattr(encoder, "config_hash", None) else ""
    return f"{memo[1]}|{encoder.preprocess_id()}{config}"


CACHE_CHUNK = 4096  # rows embedded between cache writes: what a Ctrl-C or a crash loses at most


def distinct_positions(keys: Sequence[bytes], todo: list[int]) -> tuple[list[int], list[tuple[int, int]]]:
    """(the positions in `todo` whose input (by its content key) first appears there, (position,
    its first copy's) for the rest): an input given several times, as exports often repeat
    rows, is embedded once."""
    first: dict[bytes, int] = {}
    unique, copies = [], []
    for i in todo:
        k = keys[i]
        if k in first:
            copies.append((i, first[k]))
        else:
            first[k] = i
            unique.append(i)
    return unique, copies


@torch.no_grad()
def embed(
    encoder: Encoder,
    inputs: Sequence,
    *,
    batch_size: int | None = None,
    device: torch.device | str = "cpu",
    progress=None,
    cache: bool = True,
) -> np.ndarray:
    """Features of `inputs` as a float32 (n, embed_dim) array, in eval mode.

    With `cache`, rows already embedded by the same weights and preprocessing are read from
    the on-disk cache (see encoders/cache.py) and only new ones are computed, and stored every
    CACHE_CHUNK rows, so an interrupted run keeps what it computed. An input given several
    times is embedded once. Never cache an
    encoder that is being trained: its weights hash changes every step, so it would only fill
    the disk; callers pass cache=False then. `progress` describes a bar of its own, or is an
    outer bar's `advance`, moved by every row."""
    from quickadapt.data.dataset import content_key
    from quickadapt.encoders.cache import EmbeddingCache
    from quickadapt.progress import progress_bar

    n = len(inputs)
    batch_size = batch_size or encoder.embed_batch_size
    out = np.zeros((n, encoder.embed_dim), dtype=np.float32)
    if n == 0:
        return out
    store = EmbeddingCache.for_encoder(encoder) if cache else None
    # once per input: an image's key hashes its whole file
    keys = [content_key(x, encoder.modality) for x in inputs]
    todo = list(range(n))
    if store is not None:
        todo = np.flatnonzero(~store.read_into(keys, out)).tolist()
    todo, copies = distinct_positions(keys, todo)
    # only a training encoder is switched (and back): a loaded or fit model is in eval mode, and
    # switching walks every submodule (0.75 ms a call for minilm) and raced between threads
    # predicting at once, one thread's switch back to training running another's forward with dropout
    was_training = encoder.training
    if was_training:
        encoder.eval()
    pending: list[int] = []  # computed, not yet stored
    with progress_bar(progress, total=len(todo)) as bar:
        for start in range(0, len(todo), batch_size):
            idx = todo[start : start + batch_size]
            batch = batch_to(encoder.prepare([inputs[i] for i in idx]), device)
            feats = encoder(batch).float().cpu().numpy()
            out[idx] = feats
            bar(len(idx))
            pending += idx
            if store is not None and len(pending) >= CACHE_CHUNK:
                store.add([keys[i] for i in pending], out[pending])
                pending = []
    if was_training:
        encoder.train()
    if callable(progress):  # an outer bar counts rows: those the cache or a copy served are done too
        progress(n - len(todo))
    if store is not None and pending:
        store.add([keys[i] for i in pending], out[pending])
    for i, first in copies:
        out[i] = out[first]
    return out
