"""What building a Hugging Face text encoder learns that the embedding cache and predict's notes
need, kept on disk so that a later process can find cached features without building it.

Building minilm costs ~2.5 s (importing transformers' BERT, reading the weights) and importing
transformers' tokenizer alone ~0.7 s; a predict whose every input is cached needs only the
weights' hash (part of the cache key), the model's sizes and a tokenizer to say which texts it
cannot read whole. The first build of a model folder writes them here (cache_dir()/encoders),
under a hash of the folder's files that shape them and of the libraries that read them, so a
folder or library that changes, even by one byte, is simply built again."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from importlib import metadata
from pathlib import Path

# the libraries whose reading of a folder decides the weights, sizes and tokenizer remembered
READERS = ("transformers", "tokenizers", "torch", "safetensors")
MEMO_KEYS = ("weights_hash", "n_layers", "hidden_size", "position_limit", "unk_token_id", "tokenizer")
# raise it when what is remembered, or how (weights_hash), changes: quickadapt's version alone stays
# 0.1.0 between releases, and a memo of the old kind would then key the cache and the fingerprint wrongly
MEMO_FORMAT = 1


def memo_dir() -> Path:
    from quickadapt.encoders.cache import cache_dir

    return cache_dir() / "encoders"


def folder_identity(folder: Path, tokenizer_files) -> str:
    """A hash of the folder's config, weights and tokenizer files (their bytes: ~0.1 s for
    minilm's 91 MB), quickadapt's version and its readers' versions. Hashed once per process
    while the files' sizes and modification times stay the same: a predict whose input the
    cache lacks asks for it twice (to look the memo up, then when the build checks for one)."""
    from quickadapt import __version__

    names = ["config.json", *tokenizer_files, *sorted(p.name for p in folder.glob("*.safetensors*"))]
    files = [folder / name for name in dict.fromkeys(names) if (folder / name).is_file()]
    seen = tuple((str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns) for path in files)
    if seen in _IDENTITIES:
        return _IDENTITIES[seen]
    h = hashlib.sha256(f"quickadapt {__version__} memo {MEMO_FORMAT}".encode())
    for reader in READERS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            h.update(f"|{reader} {metadata.version(reader)}".encode())
    for path in files:
        with open(path, "rb") as f:
            h.update(f"|{path.name}|".encode() + hashlib.file_digest(f, "sha256").digest())
    _IDENTITIES[seen] = h.hexdigest()[:32]
    return _IDENTITIES[seen]


_IDENTITIES: dict[tuple, str] = {}


def read_memo(identity: str) -> dict | None:
    """What a build of the folder with this identity remembered, or None (never built, or an
    unreadable memo: then the encoder is built as before)."""
    try:
        memo = json.loads((memo_dir() / f"{identity}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return memo if isinstance(memo, dict) and all(k in memo for k in MEMO_KEYS) else None


def write_memo(identity: str, memo: dict) -> None:
    """Store `memo` whole or not at all; a read-only or full disk only costs the next build."""
    folder = memo_dir()
    tmp = folder / f".{uuid.uuid4().hex}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(memo), encoding="utf-8")
        os.replace(tmp, folder / f"{identity}.json")
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
