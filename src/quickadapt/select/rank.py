"""Rank candidate encoders for a labelled task by transferability scores, without training.

Each candidate (an encoder name, a Hugging Face folder, a quickadapt model folder) embeds the
user's examples through the usual encoders and embedding cache (nothing is downloaded); the
scores read those features, and LEEP and NCE a source classifier's probabilities: a quickadapt
classifier folder's own head, or for LEEP on a plain encoder N-LEEP's Gaussian mixture. NCE
needs the hard labels of a classifier trained on a source task, which a plain encoder lacks:
there it is left out, with the reason, rather than given a stand-in no paper has measured."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from quickadapt.errors import BadInput, option
from quickadapt.progress import log
from quickadapt.select.base import SCORES, checked

DEFAULT_SCORES = ("logme", "hscore", "leep", "nce")
NO_SOURCE_NCE = "no source classifier (a plain encoder): NCE needs a classifier's source labels"
SOURCE_HEAD, SOURCE_GMM = "head", "gmm"


def rank(
    data,
    encoders: Sequence,
    *,
    scores: Sequence[str] = DEFAULT_SCORES,
    primary: str | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool = False,
) -> dict:
    """Score each of `encoders` on the labelled `data` (a Dataset, a path or builtin:NAME) and
    rank them by `primary` (the first of `scores`, LogME by default), best first.

    A candidate is a name or folder, or (name or folder, {encoder setting: value}) to compare
    settings (("efficientnet-lite0", {"size": 128})). Returns {"primary", "scores",
    "n_examples", "n_classes", "candidates": [{"encoder", "settings", "rank", "scores",
    "skipped" (score -> why), "leep_source" ("head", "gmm" or None), "embed_dim",
    "embed_seconds"}, ...]}; a candidate whose primary score was skipped ranks last."""
    from quickadapt.data import as_dataset
    from quickadapt.train import pick_device

    data = _distinct(as_dataset(data))
    data.require_labels()
    names = [scores] if isinstance(scores, str) else list(scores)  # one name, not its letters
    if not names:
        raise BadInput("give at least one score")
    for name in names:
        SCORES.get(name)  # an unknown name fails here, listing the known ones, before any embedding
    primary = primary or names[0]
    if primary not in names:
        raise BadInput(f"the primary score {primary!r} is not among the scores asked for ({', '.join(names)})")
    if isinstance(encoders, (str, os.PathLike)):  # one candidate, not its characters
        encoders = [encoders]
    candidates = [_candidate(c) for c in encoders]
    if not candidates:
        raise BadInput("give at least one candidate encoder")
    for spec, settings in candidates:  # a bad one fails now, not after the others' embedding
        _check_candidate(data, spec, settings)
    dev = pick_device(device)
    _, codes = checked(np.zeros((len(data), 1)), data.labels)
    rows = []
    for spec, settings in candidates:
        rows.append(_score_candidate(data, codes, spec, settings, names, seed, dev))
        if progress:
            log(f"{_shown(spec, settings)}: {rows[-1]['embed_dim']}-d features of {len(data)} examples in "
                f"{rows[-1]['embed_seconds']:.1f} s")
    rows.sort(key=lambda r: (r["scores"].get(primary) is None, -(r["scores"].get(primary) or 0.0)))
    for i, row in enumerate(rows, 1):
        row["rank"] = i
    return {"primary": primary, "scores": names, "n_examples": len(data), "n_classes": len(data.classes),
            "candidates": rows}


def _distinct(data):
    """`data` with each repeated example (same input, same label) kept once: a copy adds no
    evidence of how a candidate's features fit the labels, yet doubling 30 CLINC texts raised
    minilm's LogME from 0.35 to 7.30 (beyond the -1 to +1 of any real task) and N-LEEP's clusters."""
    from quickadapt.evaluate.cv import distinct_examples

    first = np.unique(distinct_examples(data), return_index=True)[1]
    if len(first) == len(data):
        return data
    log(f"note: {len(data) - len(first)} examples repeat an earlier one (same input, same label); each is scored once")
    return data.subset(np.sort(first))


def _candidate(given) -> tuple[str, dict]:
    if isinstance(given, (str, os.PathLike)):
        return str(given), {}
    if isinstance(given, (tuple, list)) and len(given) == 2 and isinstance(given[1], dict):
        return str(given[0]), dict(given[1])
    raise BadInput(f"a candidate encoder is a name, a folder, or (name, settings dict); got {given!r}")


def _check_candidate(data, spec: str, settings: dict) -> None:
    """Refuse, without building it, a candidate that is no encoder (an unknown name, a folder that
    is not a model), reads another kind of data, or is given a setting it does not take."""
    from quickadapt.adapt import is_model_folder
    from quickadapt.artifact import read_manifest
    from quickadapt.encoders import ENCODERS, encoder_modality, encoder_settings
    from quickadapt.encoders.hf_image import folder_modality

    folder = Path(spec).expanduser()
    if spec in ENCODERS:  # a registered name wins over a folder of that name, as create_encoder reads it
        reads = encoder_modality(spec)
        valid = encoder_settings(ENCODERS.get(spec))
        unknown = sorted(set(settings) - set(valid)) if valid else []
        if unknown:
            raise BadInput(f"unknown setting {unknown[0]!r} for encoder {spec!r}; valid settings are {', '.join(valid)}")
    elif is_model_folder(str(folder)):
        if settings:  # they would be dropped: the stored encoder is rebuilt as it was saved
            raise BadInput(f"encoder {spec} is a stored model: encoder settings ({', '.join(settings)}) cannot change it")
        reads = encoder_modality(str(read_manifest(folder).get("encoder", {}).get("name", "")))
    elif folder.is_dir() or "/" in spec:
        if not folder.exists():
            raise BadInput(f"encoder folder {spec} does not exist")
        reads = folder_modality(folder)  # refuses a folder that is no Hugging Face model
    else:
        ENCODERS.get(spec)  # unknown: names the known ones and close matches
        reads = None
    if reads is not None and reads != data.modality:
        raise BadInput(f"encoder {spec!r} reads {reads} but the data is {data.modality}")


def _shown(spec: str, settings: dict) -> str:
    return spec + (f" ({', '.join(f'{k}={v}' for k, v in settings.items())})" if settings else "")


def _score_candidate(data, codes: np.ndarray, spec: str, settings: dict, names: list[str], seed: int, dev) -> dict:
    started = time.perf_counter()
    features, source_proba = _embed(data, spec, settings, seed, dev)
    seconds = time.perf_counter() - started
    shown = _shown(spec, settings)
    if not np.isfinite(features).all():
        raise BadInput(f"encoder {shown} gives features that are not finite numbers (NaN or inf) for this data")
    row = {"encoder": spec, "settings": settings, "rank": None, "scores": {}, "skipped": {},
           "leep_source": None, "embed_dim": int(features.shape[1]), "embed_seconds": round(seconds, 3)}
    for name in names:
        score = SCORES.get(name)
        if score.reads == "features":
            row["scores"][name] = score(features, codes)
        elif source_proba is not None:
            row["scores"][name] = score(source_proba, codes)
            row["leep_source"] = SOURCE_HEAD
        elif name == "leep":
            from quickadapt.select.leep import nleep

            row["scores"][name] = nleep(features, codes, seed=seed)
            row["leep_source"] = SOURCE_GMM
        else:
            row["scores"][name] = None
            row["skipped"][name] = NO_SOURCE_NCE if name == "nce" else "no source classifier (a plain encoder)"
    return row


def _embed(data, spec: str, settings: dict, seed: int, dev) -> tuple[np.ndarray, np.ndarray | None]:
    """(the candidate's features of the data's inputs, its source classifier's probabilities or
    None), through the embedding cache."""
    from quickadapt.adapt import _encoder_settings, fit_encoder_inputs, is_model_folder
    from quickadapt.artifact import load_model, read_manifest, resolve_encoder
    from quickadapt.data.images import all_grey
    from quickadapt.encoders import embed
    from quickadapt.model import BlendedModel
    from quickadapt.train import seed_everything

    folder = Path(spec).expanduser()
    if is_model_folder(str(folder)) and read_manifest(folder).get("kind") in ("classifier", "multitask"):
        model = load_model(folder, device=dev)
        # a blend answers as its first part in all but its probabilities (encoder, heads): scored,
        # it would pass off that part's features and head as the blend's
        if isinstance(model, BlendedModel):
            raise BadInput(f"{spec} is a blend of several models, with no one feature space to score; rank its parts "
                           "(the folders inside it) instead")
        _same_modality(spec, model.encoder.modality, data.modality)
        features = model.features(data.inputs)  # once: a tuned encoder's are not cached
        return features, model.proba_of_features(features)
    grey = all_grey(data.inputs) if data.modality == "image" else None
    seed_everything(seed)  # a random-start encoder (conv4, resnet12) is the same one at every run
    try:
        encoder = resolve_encoder(str(folder) if folder.is_dir() else spec, for_cache=True,
                                  **_encoder_settings(spec, data, settings, grey))
    except BadInput as exc:
        # fit's way to change a setting ("; set it with --set encoder.layers=N") is no help here:
        # rank takes settings in brackets, which the message's own name for the setting already leads to
        if "; set it with " not in str(exc):
            raise
        how = option("encoders", f"--encoders {spec}[KEY=VALUE]", f"({spec!r}, {{KEY: VALUE}}) in encoders")
        raise BadInput(f"{str(exc).split('; set it with ')[0]}; set it with {how}") from None
    _same_modality(spec, encoder.modality, data.modality)
    fit_encoder_inputs(encoder, data, None)
    return embed(encoder, data.inputs, device=dev), None


def _same_modality(spec: str, reads: str, modality: str) -> None:
    if reads != modality:
        raise BadInput(f"encoder {spec!r} reads {reads} but the data is {modality}")
