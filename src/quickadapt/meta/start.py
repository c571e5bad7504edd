"""Where meta-training starts: the encoder (conv4 from a random init for images, pretrained
MiniLM for text, or any encoder name or model folder the rest of quickadapt accepts), which
methods make sense on it, and the settings a pretrained start needs.

A pretrained body changes two defaults. Its outer learning rate is the encoder's own
fine-tuning rate (MiniLM 3e-5): conv4's 1e-3 would wreck a transformer's weights within a few
steps. ProtoNet on unit-norm features (text encoders normalise each of their L pooled layers)
gets scale 5 / L: minus 5/L times the squared distance is, up to a constant per query, 10 times
the layers' mean cosine similarity, the cosine ProtoNet's customary temperature (P>M>F), where
scale 1 would give a softmax too flat (L = 1) or too sharp (L = 3 is 6x the cosine) to train
well. Settings given explicitly always win; the manifest records the values used."""
from __future__ import annotations

import os
from pathlib import Path

from quickadapt.encoders import ENCODERS, PRETRAINED
from quickadapt.errors import BadInput, option

# the default start per data modality: (encoder name, settings)
DEFAULT_START = {
    "image": ("conv4", {"size": 28, "grey": True, "norm": "group"}),  # 28x28 grey, GroupNorm (non-transductive)
    "text": ("minilm", {}),
}
# methods whose inner loop adapts every weight of the body, once per task
PER_TASK_BODY = ("maml", "fomaml", "metasgd", "reptile")
COSINE_TEMPERATURE = 10.0


def start_spec(encoder: str | None, modality: str, settings: dict | None) -> dict:
    """{"name", "settings"} of the starting encoder for `modality` data (stored in the run's spec)."""
    if modality not in DEFAULT_START:
        raise BadInput(f"meta-train reads images or text, not {modality} data")
    name = str(encoder) if encoder else DEFAULT_START[modality][0]
    base = DEFAULT_START["image"][1] if name == "conv4" else {}
    spec = {"name": name, "settings": {**base, **(settings or {})}}
    if name not in ENCODERS and Path(name).is_dir():
        # where the folder is: a --resume from another working directory names it another way
        spec["folder"] = os.path.realpath(name)
    return spec


def note_colour_read_grey(spec: dict, given: dict | None, data) -> None:
    """The default conv4 reads 28x28 grey (the Omniglot benchmarks' input, so it stays the
    default); colour images would lose their colour without a word, so a note says how to keep
    it. Only file headers are read (all_grey)."""
    from quickadapt.data.images import all_grey
    from quickadapt.progress import log

    if spec["name"] != DEFAULT_START["image"][0] or "grey" in (given or {}) or data.modality != "image":
        return
    if not all_grey(data.inputs):
        keep = option("encoder_settings", "--set encoder.grey=false", python="encoder_settings={'grey': False}")
        log(f"note: {data.name or 'data'}: images in colour are read grey by the default conv4 start; {keep} reads colour")


def build_start(spec: dict, modality: str):
    """The starting encoder and a description of its weights for the manifest:
    {"encoder", "weights": "random init" | "pretrained" | "stored model"}."""
    from quickadapt.artifact import MANIFEST, resolve_encoder

    name, settings = spec["name"], spec["settings"]
    folder = Path(name)
    stored = name not in ENCODERS and folder.is_dir() and (folder / MANIFEST).is_file()
    encoder = resolve_encoder(name, **settings)  # refuses settings for a stored model
    if encoder.modality != modality:
        article = "an" if modality[0] in "aeiou" else "a"
        raise BadInput(f"encoder {name!r} reads {encoder.modality} but the data is {modality}; "
                       f"pass {option('encoder')} with {article} {modality} encoder (default: {DEFAULT_START[modality][0]})")
    if stored:
        weights = "stored model"
    elif name in ENCODERS:
        weights = "pretrained" if name in PRETRAINED else "random init"
    else:
        weights = "pretrained"  # a Hugging Face folder
    return encoder, {"encoder": name, "weights": weights}


def check_method(method: str, encoder) -> None:
    """Refuse methods that adapt the whole body per task on a transformer: second-order
    gradients through 22.7M weights per task cost many times a ProtoNet step on CPU, and an
    inner SGD step at MAML's learning rates destroys pretrained weights rather than adapting them."""
    if method in PER_TASK_BODY and encoder.modality == "text":
        n = sum(p.numel() for p in encoder.parameters()) / 1e6
        raise BadInput(f"method {method} adapts every weight of the body per task, too slow and destructive for a "
                       f"{n:.1f}M-parameter text encoder; use protonet, matchingnet or anil (head-only inner loop)")


def method_defaults(method: str, encoder, start: dict, settings: dict) -> dict:
    """`settings` plus the defaults a pretrained start needs (see the module docstring)."""
    out = dict(settings)
    if start["weights"] != "random init" and method != "reptile" and "outer_lr" not in out:
        out["outer_lr"] = encoder.finetune_lr
    if method == "protonet" and "scale" not in out:
        out["scale"] = default_scale(encoder)
    return out


def default_scale(encoder) -> float:
    """Logit scale for prototype distances: 5 / L for L concatenated unit-norm layers, else 1."""
    if encoder.settings.get("normalize") is not True:
        return 1.0
    return COSINE_TEMPERATURE / (2 * int(encoder.settings.get("layers", 1)))


__all__ = ["DEFAULT_START", "start_spec", "note_colour_read_grey", "build_start", "check_method", "method_defaults", "default_scale"]
