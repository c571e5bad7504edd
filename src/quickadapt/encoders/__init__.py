"""Encoders by name: `create_encoder("minilm")`, like timm's `create_model`.

Registered explicitly below (no import side effects elsewhere). A path to a local Hugging Face
folder (with `config.json`) also works, as a text or an image encoder by what the folder holds
(a tokenizer, an image processor: `hf_image.folder_modality`); a quickadapt model folder as
encoder is resolved one layer up, in `quickadapt.artifact.resolve_encoder`, since encoders know nothing of artifacts."""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Callable

from quickadapt.encoders.base import Encoder, batch_to, embed, weights_hash
from quickadapt.encoders.conv4 import create_conv4
from quickadapt.encoders.efficientnet_lite0 import create_efficientnet_lite0
from quickadapt.encoders.hf_image import create_hf_image_folder, folder_modality
from quickadapt.encoders.hf_text import cached_hf_encoder, create_hf_folder, create_minilm, minilm_path
from quickadapt.encoders.mlp import create_mlp
from quickadapt.encoders.resnet12 import create_resnet12
from quickadapt.encoder_catalog import ENCODER_MODALITY
from quickadapt.errors import BadInput
from quickadapt.registry import Registry

ENCODERS: Registry[Callable[..., Encoder]] = Registry("encoder")
ENCODERS.register("minilm")(create_minilm)
ENCODERS.register("mlp")(create_mlp)
ENCODERS.register("conv4")(create_conv4)
ENCODERS.register("resnet12")(create_resnet12)
ENCODERS.register("efficientnet-lite0")(create_efficientnet_lite0)



PRETRAINED = {"minilm", "efficientnet-lite0"}
# untouched pretrained encoders already read in this process: strategies train the copies they get
_PRISTINE: dict[tuple, Encoder] = {}


def encoder_settings(factory) -> list[str]:
    """The settings an encoder factory passes on to its class (from the class's signature, named
    by the factory's return annotation), or [] when that cannot be read."""
    return sorted(_setting_types(factory))


def encoder_defaults(factory) -> dict:
    """Setting name -> its default, as `quickadapt encoders` lists them ({} when unreadable)."""
    import inspect
    import typing

    try:
        params = inspect.signature(typing.get_type_hints(factory).get("return")).parameters
    except Exception:
        return {}
    # an int marking a default (hf_text.DefaultLength) as the plain number a user would give
    return {k: int(d) if isinstance(d, int) and not isinstance(d, bool) else d
            for k in encoder_settings(factory) if (d := params[k].default) is not inspect.Parameter.empty}


def _setting_types(factory) -> dict:
    """Setting name -> its annotation in the encoder class's signature ({} when unreadable)."""
    import inspect
    import typing

    try:
        cls = typing.get_type_hints(factory).get("return")
        params = inspect.signature(cls).parameters.values()
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # an unannotated or odd factory: no list, the message still names the setting
        return {}
    return {p.name: hints.get(p.name) for p in params if p.name not in ("self", "path", "pretrained")
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def typed_settings(factory, settings: dict, name: str) -> dict:
    """`settings` read as the encoder's signature types them, as strategy settings are read
    (`no` is false, 2.7 is not a count of layers): the constructors would take them as given."""
    from quickadapt.settings import as_type

    types = _setting_types(factory)
    return {k: as_type(v, types[k], f"setting {k!r} for encoder {name!r}") if types.get(k) else v
            for k, v in settings.items()}


def unknown_setting(exc: TypeError, factory, name) -> BadInput | None:
    """The one-line error for a setting the encoder's class does not take (its TypeError names
    the keyword argument), naming the setting, not the Python class that refused it; None for
    another TypeError."""
    unknown = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
    if not unknown:
        return None
    valid = encoder_settings(factory)
    listed = f"; valid settings are {', '.join(valid)}" if valid else ""
    return BadInput(f"unknown setting {unknown.group(1)!r} for encoder {name!r}{listed}")


def create_encoder(name: str, *, pretrained: bool = True, share_weights: bool = False, **settings) -> Encoder:
    """Build encoder `name` (a registry name or a Hugging Face folder path) with `settings`.
    `share_weights` (an encoder that is never trained: a frozen strategy's, a prediction's): a
    built-in pretrained encoder's weight tensors are those already read in this process, not a
    copy of them (`weights_shared_copy`)."""
    if name not in ENCODERS and ("/" in str(name) or Path(str(name)).is_dir()):
        folder = Path(name)
        if not folder.exists():
            raise BadInput(f"encoder folder {name} does not exist")
        factory = create_hf_image_folder if folder_modality(folder) == "image" else create_hf_folder
        try:
            encoder = factory(folder, pretrained=pretrained, **typed_settings(factory, settings, str(name)))
        except TypeError as exc:  # a setting of the other kind of folder's encoder
            unknown = unknown_setting(exc, factory, name)
            if unknown is None:
                raise
            raise unknown from None
        encoder.is_pretrained = pretrained
        return encoder
    factory = ENCODERS.get(name)
    settings = typed_settings(factory, settings, name)
    key = (name, pretrained, repr(sorted(settings.items())))
    if pretrained and name in PRETRAINED and key in _PRISTINE:
        # fresh module, without reading the weights again
        return weights_shared_copy(_PRISTINE[key]) if share_weights else copy.deepcopy(_PRISTINE[key])
    try:
        encoder = factory(pretrained=pretrained, **settings)
    except BadInput:  # the encoder's own message names the setting already
        raise
    except TypeError as exc:
        unknown = unknown_setting(exc, factory, name)
        if unknown is not None:
            raise unknown from None
        raise BadInput(f"bad setting for encoder {name!r}: {str(exc).splitlines()[0]}") from None
    except (ValueError, RuntimeError) as exc:
        # a setting of the wrong kind or size (torch refuses a negative width with RuntimeError)
        raise BadInput(f"bad setting for encoder {name!r}: {str(exc).splitlines()[0]}") from None
    if encoder.name != name:  # a model names the encoder by this: it must rebuild this one, not another
        raise BadInput(f"encoder {name!r} builds a {type(encoder).__name__} whose name is {encoder.name!r}; "
                       f"set its class's name to {name!r}, which saved models rebuild it by")
    # only these ship weights, and a user's encoder whose factory says it read its own (sets
    # is_pretrained); the others start from a seeded random init that artifacts must store
    encoder.is_pretrained = pretrained and (name in PRETRAINED or encoder.is_pretrained)
    if encoder.is_pretrained and share_weights and name in PRETRAINED:
        _PRISTINE[key] = encoder  # nothing trains it: the copy that could change is the caller's
        return weights_shared_copy(encoder)
    if encoder.is_pretrained:
        _PRISTINE[key] = copy.deepcopy(encoder)
    return encoder


def weights_shared_copy(encoder: Encoder) -> Encoder:
    """A copy of `encoder` with modules (and so modes, devices, dtypes: `.to()` and `.train()`
    act on the copy alone) of its own, and Parameters of its own over the same weight tensors.
    Only for an encoder that is never trained, since an optimizer's step would write the tensors
    every copy shares. A whole copy of MiniLM is 93 MB: every FewShotClassifier fitted in a
    process held one (ten fitted in a notebook, 0.9 GB; `quickadapt serve` swaps its tasks' for
    one it shares, but each fit made its copy first)."""
    import torch

    memo = {id(p): torch.nn.Parameter(p.detach(), requires_grad=p.requires_grad) for p in encoder.parameters()}
    memo.update({id(b): b for b in encoder.buffers()})  # a buffer .to() replaces in the module, in place of writing it
    return copy.deepcopy(encoder, memo)


def create_encoder_for_cache(name: str, **settings) -> Encoder:
    """`create_encoder(name, pretrained=True, **settings)` for predicting: a text encoder whose
    files an earlier build remembered comes unbuilt, so that inputs whose features are all
    cached skip importing transformers and reading the weights (~2.5 s for minilm); it is built
    at the first input the cache lacks. Never for an encoder that will be trained (a frozen
    strategy's fit may: it only embeds)."""
    if name == "minilm" or (name not in ENCODERS and Path(str(name)).is_dir() and folder_modality(Path(str(name))) == "text"):
        folder, factory = (minilm_path(), create_minilm) if name == "minilm" else (Path(str(name)), create_hf_folder)
        if set(settings) <= set(encoder_settings(factory)):  # else create_encoder names the unknown one
            # a folder by its real path, as create_hf_folder names it (a fit stores the name in its model)
            encoder = cached_hf_encoder(folder, "minilm" if name == "minilm" else str(folder.resolve()),
                                        typed_settings(factory, settings, str(name)))
            if encoder is not None:
                return encoder
    return create_encoder(name, share_weights=True, **settings)


def encoder_modality(name: str) -> str | None:
    """What registry encoder `name` reads, without building it: the catalog's for the built-in
    ones, else the `modality` of the class its factory is annotated to return (or is); None for
    a name not registered, or a factory that does not say."""
    if name in ENCODER_MODALITY:
        return ENCODER_MODALITY[name]
    if name not in ENCODERS:
        return None
    import typing

    factory = ENCODERS.get(name)
    try:
        cls = factory if isinstance(factory, type) else typing.get_type_hints(factory).get("return")
    except Exception:  # an annotation that does not resolve
        return None
    return getattr(cls, "modality", None) or None


def list_encoders() -> list[str]:
    return ENCODERS.names()


__all__ = ["Encoder", "ENCODERS", "ENCODER_MODALITY", "create_encoder", "weights_shared_copy", "encoder_modality", "list_encoders", "embed", "batch_to", "weights_hash"]
