"""On-disk embedding cache: safetensors shards, no pickle, atomic writes.

A cache directory is keyed by the encoder's weights hash, its preprocessing and the library
version; inside it each row is keyed by the sha256 of one input's content (text or image
bytes, never its label)."""
from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from quickadapt.data.dataset import content_bytes


def cache_root() -> Path:
    return Path(os.environ.get("QUICKADAPT_CACHE", Path.home() / ".cache" / "quickadapt")) / "embeddings"


class EmbeddingCache:
    def __init__(self, directory: Path):
        self.directory = directory

    @classmethod
    def for_encoder(cls, encoder) -> "EmbeddingCache | None":
        if os.environ.get("QUICKADAPT_NO_CACHE"):
            return None
        from quickadapt import __version__
        from quickadapt.encoders.base import weights_hash

        # hashing ~100 MB of weights takes a moment: remember it until any tensor changes in place
        # (optimiser steps and load_state_dict bump each tensor's _version counter)
        version = sum(t._version for t in encoder.state_dict(keep_vars=True).values())
        memo = getattr(encoder, "_weights_hash_memo", None)
        if memo is None or memo[0] != version:
            memo = (version, weights_hash(encoder))
            encoder._weights_hash_memo = memo
        key = hashlib.sha256(
            f"{memo[1]}|{encoder.preprocess_id()}|{__version__}".encode()
        ).hexdigest()[:32]
        return cls(cache_root() / key)

    @staticmethod
    def _row_keys(inputs: Sequence, modality: str) -> np.ndarray:
        keys = np.zeros((len(inputs), 32), dtype=np.uint8)
        for i, x in enumerate(inputs):
            keys[i] = np.frombuffer(hashlib.sha256(content_bytes(x, modality)).digest(), dtype=np.uint8)
        return keys

    def lookup(self, inputs: Sequence, modality: str) -> dict[int, np.ndarray]:
        if not self.directory.is_dir():
            return {}
        wanted = {k.tobytes(): i for i, k in enumerate(self._row_keys(inputs, modality))}
        found: dict[int, np.ndarray] = {}
        for shard in sorted(self.directory.glob("*.safetensors")):
            try:
                data = load_file(str(shard))
            except Exception:  # a damaged shard is only a cache miss
                continue
            for key, row in zip(data["keys"], data["features"]):
                i = wanted.get(key.tobytes())
                if i is not None:
                    found[i] = row
            if len(found) == len(wanted):
                break
        return found

    def add(self, inputs: Sequence, modality: str, features: np.ndarray) -> None:
        name = uuid.uuid4().hex
        tmp = self.directory / f".{name}.tmp"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            save_file(
                {"keys": self._row_keys(inputs, modality), "features": np.ascontiguousarray(features, dtype=np.float32)},
                str(tmp),
            )
            os.replace(tmp, self.directory / f"{name}.safetensors")
        except (OSError, SafetensorError):  # safetensors reports a full disk as its own error
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)  # a read-only or full disk only costs recomputation
