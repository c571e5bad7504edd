"""Built-in real datasets, addressed as `builtin:NAME` wherever a data path is accepted.

Shipped data lives in `quickadapt/datasets_data/` (see its README.md for provenance and
licences); digits come from scikit-learn and Fashion-MNIST from a Debian package. Raw data
is parsed once per process and cached; each call returns a fresh `Dataset` around it.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from quickadapt.data.dataset import Dataset
from quickadapt.errors import BadInput

DATA_DIR = Path(__file__).resolve().parent.parent / "datasets_data"
FASHION_DIRS = ("/usr/share/datasets/fashion-mnist",)  # Debian's dataset-fashion-mnist
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


@dataclass(frozen=True)
class BuiltinSpec:
    name: str
    modality: str
    n: int  # known up front so `quickadapt datasets` lists without loading anything
    classes: int
    description: str
    licence: str
    load: Callable[[], Dataset]
    available: Callable[[], bool] = lambda: True  # False: its files are installed apart from quickadapt, and missing


# --- CLINC150 -----------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _clinc() -> tuple[dict, dict]:
    with gzip.open(DATA_DIR / "clinc150" / "data_full.json.gz", "rt", encoding="utf-8") as f:
        data = json.load(f)
    domains = json.loads((DATA_DIR / "clinc150" / "domains.json").read_text(encoding="utf-8"))
    intent_domain = {intent: dom for dom, intents in domains.items() for intent in intents}
    intent_domain["oos"] = "oos"
    return data, intent_domain


def _clinc_split(name: str, parts: tuple[str, ...]) -> Callable[[], Dataset]:
    def load() -> Dataset:
        data, intent_domain = _clinc()
        rows = [row for part in parts for row in data[part]]
        labels = np.asarray([r[1] for r in rows], dtype=object)
        groups = np.asarray([intent_domain[r[1]] for r in rows], dtype=object)
        return Dataset("text", [r[0] for r in rows], labels, name=name, groups=groups)
    return load


# --- Omniglot -----------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _omniglot() -> tuple[list, list, list]:
    """Decode both zips straight from disk (~0.5 s). Greek and Latin are in both zips,
    byte-identical, so a path already seen is skipped."""
    from PIL import Image

    images, ids, seen = [], [], set()
    for zname in ("images_background_small1.zip", "images_background_small2.zip"):
        with zipfile.ZipFile(DATA_DIR / "omniglot" / zname) as zf:
            for member in sorted(zf.namelist()):
                rel = member.split("/", 1)[1]  # drop the zip's top folder
                if not rel.endswith(".png") or rel in seen:
                    continue
                seen.add(rel)
                with Image.open(io.BytesIO(zf.read(member))) as im:
                    # mode '1' -> 'L': ink 0, paper 255
                    images.append(np.asarray(im.convert("L"), dtype=np.uint8))
                ids.append(rel)
    order = sorted(range(len(ids)), key=ids.__getitem__)
    ids = [ids[i] for i in order]
    images = [images[i] for i in order]
    labels = [rel.rsplit("/", 1)[0] for rel in ids]  # "Alphabet/characterNN"
    return images, labels, ids


def _load_omniglot() -> Dataset:
    images, labels, ids = _omniglot()
    groups = np.asarray([lab.split("/", 1)[0] for lab in labels], dtype=object)
    return Dataset("image", list(images), np.asarray(labels, dtype=object), "omniglot", groups, list(ids))


# --- digits (scikit-learn) ----------------------------------------------------------------

@lru_cache(maxsize=None)
def _digits():
    from sklearn.datasets import load_digits

    return load_digits()


def _load_digits_images() -> Dataset:
    d = _digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)  # 0..16 -> 0..255
    return Dataset("image", list(images), d.target, name="digits")


def _load_digits_features() -> Dataset:
    d = _digits()
    return Dataset("features", d.data.astype(np.float32), d.target, name="digits-features")


# --- Fashion-MNIST (Debian package) -------------------------------------------------------

def _fashion_dir() -> Path:
    env = os.environ.get("QUICKADAPT_FASHION_MNIST")
    for d in ([env] if env else []) + list(FASHION_DIRS):
        if (Path(d) / "t10k-labels-idx1-ubyte.gz").exists() or (Path(d) / "t10k-labels-idx1-ubyte").exists():
            return Path(d)
    where = f"QUICKADAPT_FASHION_MNIST={env} or " if env else ""
    raise BadInput(
        f"Fashion-MNIST not found in {where}{FASHION_DIRS[0]}; install it with "
        "`apt-get install dataset-fashion-mnist` or set QUICKADAPT_FASHION_MNIST to a folder with its IDX files"
    )


def _fashion_installed() -> bool:
    try:
        _fashion_dir()
        return True
    except BadInput:
        return False


def _read_idx(path: Path) -> np.ndarray:
    """IDX format: 2 zero bytes, dtype code (0x08 = uint8), ndim, then ndim big-endian sizes."""
    if not path.exists():
        path = path.with_suffix("")  # uncompressed copy
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        raw = f.read()
    if raw[:3] != b"\x00\x00\x08":
        raise BadInput(f"{path}: not a uint8 IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


@lru_cache(maxsize=None)
def _fashion(split: str) -> tuple[np.ndarray, np.ndarray]:
    d = _fashion_dir()
    prefix = "train" if split == "train" else "t10k"
    images = _read_idx(d / f"{prefix}-images-idx3-ubyte.gz")
    labels = np.asarray(FASHION_CLASSES, dtype=object)[_read_idx(d / f"{prefix}-labels-idx1-ubyte.gz")]
    return images, labels


def _fashion_split(split: str) -> Callable[[], Dataset]:
    def load() -> Dataset:
        images, labels = _fashion(split)
        # frombuffer arrays are read-only; copy so callers may modify (and torch won't warn)
        return Dataset("image", list(images.copy()), labels, name=f"fashion-mnist-{split}")
    return load


# --- the table ----------------------------------------------------------------------------

_CLINC_LIC = "CC BY 3.0 (Larson et al. 2019, github clinc/oos-eval)"
_BUILTINS = {
    s.name: s
    for s in [
        BuiltinSpec("clinc150-train", "text", 15000, 150,
                    "CLINC150 intents, in-scope train (100 per intent); groups = 10 domains", _CLINC_LIC,
                    _clinc_split("clinc150-train", ("train",))),
        BuiltinSpec("clinc150-val", "text", 3100, 151,
                    "CLINC150 val: 3,000 in-scope + 100 out-of-scope rows labelled `oos`", _CLINC_LIC,
                    _clinc_split("clinc150-val", ("val", "oos_val"))),
        BuiltinSpec("clinc150-test", "text", 5500, 151,
                    "CLINC150 test: 4,500 in-scope + 1,000 out-of-scope rows labelled `oos`", _CLINC_LIC,
                    _clinc_split("clinc150-test", ("test", "oos_test"))),
        BuiltinSpec("clinc150-oos-train", "text", 100, 1,
                    "CLINC150 out-of-scope training rows (all labelled `oos`)", _CLINC_LIC,
                    _clinc_split("clinc150-oos-train", ("oos_train",))),
        BuiltinSpec("omniglot", "image", 4840, 242,
                    "Omniglot small background sets: 8 alphabets, 242 characters x 20 drawers, 105x105; "
                    "labels Alphabet/characterNN, groups = alphabet", "MIT (Lake et al. 2015, github brendenlake/omniglot)",
                    _load_omniglot),
        BuiltinSpec("digits", "image", 1797, 10,
                    "scikit-learn handwritten digits as 8x8 uint8 images (0..255)",
                    "CC BY 4.0 (UCI optical digits, bundled with scikit-learn)", _load_digits_images),
        BuiltinSpec("digits-features", "features", 1797, 10,
                    "scikit-learn handwritten digits as 64-d feature vectors (values 0..16)",
                    "CC BY 4.0 (UCI optical digits, bundled with scikit-learn)", _load_digits_features),
        BuiltinSpec("fashion-mnist-train", "image", 60000, 10,
                    "Fashion-MNIST train, 28x28 grey (needs apt package dataset-fashion-mnist)",
                    "MIT (Xiao et al. 2017)", _fashion_split("train"), _fashion_installed),
        BuiltinSpec("fashion-mnist-test", "image", 10000, 10,
                    "Fashion-MNIST test, 28x28 grey (needs apt package dataset-fashion-mnist)",
                    "MIT (Xiao et al. 2017)", _fashion_split("test"), _fashion_installed),
    ]
}


def list_builtin() -> list[dict]:
    """One dict per built-in dataset: name, modality, n, classes, description, licence, and
    available (False where its files, installed apart from quickadapt, are missing)."""
    return [
        dict(name=s.name, modality=s.modality, n=s.n, classes=s.classes, description=s.description, licence=s.licence,
             available=s.available())
        for s in _BUILTINS.values()
    ]


def load_builtin(name: str) -> Dataset:
    """The built-in dataset `name` (without the `builtin:` prefix), labelled."""
    spec = _BUILTINS.get(name)
    if spec is None:
        raise BadInput(f"unknown built-in dataset {name!r}; available: {', '.join(_BUILTINS)}")
    return spec.load()
