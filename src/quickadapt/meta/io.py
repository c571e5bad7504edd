"""Meta-trained models on disk: an encoder artifact (kind "encoder") that also carries the
learner's own meta-parameters (`meta.*` tensors) and, in the manifest's `meta` key, the method,
its settings and the class split, so `quickadapt episodes` can adapt the way it was trained and
test on held-out classes, while `--encoder DIR` simply uses the body."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from quickadapt.artifact import (MANIFEST, _load_tensors, build_encoder, fit_weights, manifest_errors, plugin_modules,
                                 read_manifest, read_whole, save_encoder, stored_class_split as manifest_class_split,
                                 unregistered, wait_for_swap)
from quickadapt.data.episodes import ClassSplit
from quickadapt.errors import BadInput
from quickadapt.encoders import ENCODERS
from quickadapt.meta import META, create_meta
from quickadapt.meta.base import MetaLearner
from quickadapt.output import as_path

# model folders followed through info.encoder_folder (a model fitted on a model fitted on a
# meta-trained one...): a few levels, so a loop of folders cannot hang the lookup
ENCODER_CHAIN = 4


def save_meta_model(
    learner: MetaLearner, out: str | Path, *, split: ClassSplit, info: dict, force: bool = False,
    seed: int | None = None, data_fingerprint: str | None = None, metrics: dict | None = None,
    extra_files: dict | None = None,
) -> Path:
    """`info`: what describes the run (n_way, k_shot, n_query, steps, data...), stored under `meta`."""
    meta = {
        "method": learner.name,
        "settings": asdict(learner.cfg),
        "class_split": split.to_dict(),
        "normalisation": "GroupNorm: per-example statistics, nothing pooled across support or query"
        if learner.encoder.settings.get("norm") == "group"
        else str(learner.encoder.settings.get("norm") or "the encoder's own, per example (e.g. LayerNorm)"),
        **info,
    }
    extra = {f"meta.{k}": v for k, v in learner.extra_state().items()}
    return save_encoder(
        learner.encoder, out, force=force, extra_tensors=extra, data_fingerprint=data_fingerprint, seed=seed,
        metrics=metrics, strategy={"name": f"meta-train:{learner.name}", "params": asdict(learner.cfg)},
        extra={"meta": meta, **plugin_modules([(ENCODERS, learner.encoder.name), (META, learner.name)])},
        extra_files=extra_files,
    )


def load_meta_model(folder: str | Path) -> tuple[MetaLearner, dict]:
    """The learner (encoder and meta-parameters) and manifest of a meta-trained model folder."""
    folder = Path(folder)
    return read_whole(folder, lambda: _read_meta_model(folder))


def _read_meta_model(folder: Path) -> tuple[MetaLearner, dict]:
    manifest = read_manifest(folder)
    if manifest.get("kind") != "encoder" or "meta" not in manifest:
        raise BadInput(f"{folder}: not a meta-trained model (written by `quickadapt meta-train`)")
    with manifest_errors(folder):
        return _load_meta_model(folder, manifest)


def _load_meta_model(folder: Path, manifest: dict) -> tuple[MetaLearner, dict]:
    tensors = _load_tensors(folder)
    encoder = build_encoder(manifest, tensors, folder)
    meta = manifest["meta"]
    if meta["method"] not in META:  # episodes adapt as it was trained: the method's own code
        raise unregistered(folder, f"meta-learning method {meta['method']!r}", manifest)
    learner = create_meta(meta["method"], encoder, **meta["settings"])
    state = {k[len("meta."):]: v for k, v in tensors.items() if k.startswith("meta.")}
    state.update({f"encoder.{k}": v for k, v in encoder.state_dict().items()})
    # as every stored tensor is checked: another shape was a traceback, another dtype cast silently
    fit_weights(learner, state, folder, f"method {meta['method']!r}'s meta-parameters")
    return learner.eval(), manifest


def load_episode_learner(spec: str | Path) -> tuple[MetaLearner, dict | None]:
    """What `quickadapt episodes` measures: a meta-trained model folder (its learner and
    manifest), or any other encoder (a registry name, a Hugging Face folder, a quickadapt model
    folder such as OUT/pretrained) as a ProtoNet over its features, with no manifest: the
    baseline without meta-training."""
    from quickadapt.artifact import resolve_encoder
    from quickadapt.encoders import ENCODER_MODALITY, ENCODERS
    from quickadapt.meta.protonet import ProtoNet, ProtoNetConfig
    from quickadapt.meta.start import default_scale

    folder = as_path(spec, "model")
    wait_for_swap(folder)  # a folder that fit --force is replacing is briefly missing: not 'neither ... nor'
    if not folder.exists() and str(spec) not in ENCODERS:
        raise BadInput(f"{spec} is neither a model folder nor an encoder name (encoders: {', '.join(ENCODERS.names())})")
    if ENCODER_MODALITY.get(str(spec)) == "features":  # episodes are drawn from images or texts
        readers = ", ".join(n for n in ENCODERS.names() if ENCODER_MODALITY.get(n) != "features")
        raise BadInput(f"encoder '{spec}' reads feature vectors; episodes are drawn from images or text: use one of {readers}")
    plain = str(spec) in ENCODERS or (folder / "config.json").is_file()
    if not plain and (folder / "manifest.json").is_file():
        plain = "meta" not in read_manifest(folder)
    if not plain:
        return load_meta_model(folder)  # also says clearly what is wrong with a bad folder
    encoder = resolve_encoder(str(spec)).eval()
    return ProtoNet(encoder, ProtoNetConfig(scale=default_scale(encoder))).eval(), None


def model_chain(spec) -> list[tuple[Path, dict]]:
    """(folder, manifest) of the quickadapt model folder `spec` and of the model folders its
    encoder came from (info.encoder_folder), nearest first, at most ENCODER_CHAIN; empty for an
    encoder name or a Hugging Face folder."""
    chain, folder = [], Path(str(spec))
    while len(chain) < ENCODER_CHAIN and (folder / MANIFEST).is_file():
        try:
            manifest = read_manifest(folder)
        except BadInput:  # the encoder itself is loaded elsewhere, and says what is wrong
            break
        chain.append((folder, manifest))
        nxt = (manifest.get("info") or {}).get("encoder_folder")
        if not nxt:
            break
        folder = Path(str(nxt))
    return chain


def stored_class_split(spec) -> ClassSplit | None:
    """The class split stored with a model folder: a meta-trained model's (meta.class_split), a
    pretrained stage's (OUT/pretrained: class_split), or, for a model fitted on such an encoder,
    the one of the folder its encoder came from. None for an encoder that never saw episodes' data."""
    for _, manifest in model_chain(spec):
        stored = manifest_class_split(manifest)
        if stored:
            return ClassSplit.from_dict(stored)
    return None


def lost_encoder_source(spec) -> str | None:
    """Where a model folder's encoder came from, said so, when that place can no longer be read
    (moved, deleted), so a class split stored there, the classes a meta-trained encoder trained
    on, is unknown; None where the chain of folders ends in an encoder made from its name. A
    model fit before fit kept the split in info.class_split has only info.encoder_folder to find
    it by, and one from before that not even this: only that its encoder had learned somewhere."""
    from quickadapt.encoders import ENCODERS, PRETRAINED

    chain = model_chain(spec)
    if not chain:
        return None
    info = chain[-1][1].get("info") or {}
    if info.get("encoder_folder"):  # the chain stopped there
        return f"{info['encoder_folder']}, which can no longer be read"
    name = str((chain[-1][1].get("encoder") or {}).get("name"))
    if info.get("encoder_pretrained") and name in ENCODERS and name not in PRETRAINED:  # a random start that had learned
        return "another model folder, which it does not name"
    return None


def trained_as(spec) -> str | None:
    """How a model folder's encoder was trained, as its strategies nearest first ("pretrain",
    "prototypes on meta-train:protonet"); None for a plain encoder name or Hugging Face folder."""
    names = [str((m.get("strategy") or {}).get("name") or "?") for _, m in model_chain(spec)]
    return " on ".join(names) or None
