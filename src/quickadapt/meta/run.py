"""One-call entry points behind `quickadapt meta-train` and `quickadapt episodes`.

`run_meta_train` builds the encoder (conv4, 28x28 grey, GroupNorm by default), splits the
classes (the fixed Omniglot split when the data holds its alphabets), meta-trains with
checkpoints in `OUT/checkpoint/` and writes the model folder; `resume=True` rebuilds the run
from the checkpoint. `run_episodes` measures N-way K-shot accuracy on a model's held-out classes."""
from __future__ import annotations

import shutil
from pathlib import Path

from quickadapt.data.episodes import ClassSplit, EpisodeSampler, default_split, load_episode_data
from quickadapt.encoders import create_encoder
from quickadapt.errors import BadInput
from quickadapt.evaluate.episodes import episode_accuracy
from quickadapt.meta import create_meta
from quickadapt.meta.io import load_meta_model, save_meta_model
from quickadapt.meta.train import MetaTrainConfig, meta_train, read_checkpoint_json
from quickadapt.settings import build_config
from quickadapt.train import pick_device, seed_everything

CHECKPOINT = "checkpoint"
DEFAULT_ENCODER = {"name": "conv4", "settings": {"size": 28, "grey": True, "norm": "group"}}
TRAIN_KEYS = ("steps", "meta_batch", "time_budget", "checkpoint_every", "checkpoint_steps", "path", "grad_clip")
SHAPE_KEYS = ("data", "method", "n_way", "k_shot", "n_query", "seed", "rotations", "settings", "encoder")


def run_meta_train(
    data: str, *, method: str, n_way: int, k_shot: int, out: str | Path, n_query: int = 5, steps: int = 2000,
    meta_batch: int = 16, time_budget: float | None = None, settings: dict | None = None,
    encoder_settings: dict | None = None, rotations: bool = True, seed: int = 0, resume: bool = False,
    force: bool = False, device: str = "auto", checkpoint_every: float = 300.0, checkpoint_steps: int | None = None,
    progress: bool = True, on_step=None,
) -> dict:
    out = Path(out)
    settings = dict(settings or {})
    train_settings = {k: settings.pop(k) for k in list(settings) if k in TRAIN_KEYS}
    spec = {
        "data": str(data), "method": method, "n_way": int(n_way), "k_shot": int(k_shot), "n_query": int(n_query),
        "seed": int(seed), "rotations": bool(rotations), "settings": settings,
        "encoder": {"name": "conv4", "settings": {**DEFAULT_ENCODER["settings"], **(encoder_settings or {})}},
    }
    ckpt = out / CHECKPOINT
    if resume:
        saved = read_checkpoint_json(ckpt)["spec"]
        differ = [k for k in SHAPE_KEYS if saved.get(k) != spec[k]]
        if differ:
            k = differ[0]
            raise BadInput(f"--resume: {k} is {spec[k]!r} but the checkpoint in {out} was trained with {saved.get(k)!r}")
    elif out.exists():
        if not force:
            raise BadInput(f"{out} already exists; choose another --out, pass --resume to continue it, or --force to replace it")
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    cfg = build_config(MetaTrainConfig, {"steps": steps, "meta_batch": meta_batch, "time_budget": time_budget,
                                         "checkpoint_every": checkpoint_every, "checkpoint_steps": checkpoint_steps,
                                         **train_settings}, "meta-train")
    dev = pick_device(device)

    dataset = load_episode_data(data)
    if dataset.modality != "image":
        raise BadInput(f"{data} is {dataset.modality} data; meta-train reads images (class folders or builtin:omniglot)")
    split = default_split(dataset, seed=seed)
    seed_everything(seed)
    encoder = create_encoder("conv4", pretrained=False, **spec["encoder"]["settings"])
    learner = create_meta(method, encoder, **settings)
    sampler = EpisodeSampler(dataset, n_way, k_shot, n_query, seed, rotations=rotations, classes=split.train,
                             prepare=encoder.prepare)
    summary = meta_train(learner, sampler, cfg, checkpoint_dir=ckpt, resume=resume, spec=spec, device=dev,
                         description=f"meta-training {method}" if progress else None, on_step=on_step)
    learner.cpu()
    info = {"n_way": n_way, "k_shot": k_shot, "n_query": n_query, "rotations": rotations, "data": str(data),
            "train": summary}
    tmp_ckpt = out.with_name(f".{out.name}.checkpoint")  # the swap replaces `out`: keep the checkpoint aside
    shutil.rmtree(tmp_ckpt, ignore_errors=True)
    shutil.move(str(ckpt), tmp_ckpt)
    try:
        save_meta_model(learner, out, split=split, info=info, force=True, seed=seed,
                        data_fingerprint=dataset.fingerprint() if len(dataset) <= 20000 else None,
                        extra_files={CHECKPOINT: lambda p: shutil.copytree(tmp_ckpt, p)})
    except BaseException:
        if not ckpt.exists():
            shutil.move(str(tmp_ckpt), ckpt)
        raise
    shutil.rmtree(tmp_ckpt, ignore_errors=True)
    return {"out": str(out), "method": method, "n_way": n_way, "k_shot": k_shot,
            "classes": {"train": len(split.train), "val": len(split.val), "test": len(split.test)}, **summary}


def run_episodes(
    model: str | Path, data: str, *, n_way: int, k_shot: int, episodes: int = 600, n_query: int = 15,
    split: str = "test", adapt: str = "method", seed: int = 0, device: str = "auto", progress: bool = True,
) -> dict:
    """Mean accuracy and 95% CI over `episodes` seeded episodes from the model's `split` classes
    (`all`: every class of `data`). `adapt`: "method" (the way it was meta-trained) or
    "prototypes" (nearest class mean of the body's features, any method)."""
    if adapt not in ("method", "prototypes"):
        raise BadInput(f"--adapt must be method or prototypes, got {adapt!r}")
    if episodes < 1:
        raise BadInput(f"--episodes must be >= 1, got {episodes}")
    learner, manifest = load_meta_model(model)
    dev = pick_device(device)
    learner.to(dev).eval()
    dataset = load_episode_data(data)
    if dataset.modality != "image":
        raise BadInput(f"{data} is {dataset.modality} data but the model reads images")
    class_split = ClassSplit.from_dict(manifest["meta"]["class_split"])
    classes = dataset.classes if split == "all" else class_split.part(split)
    present = sorted(set(classes) & set(dataset.classes))
    if not present:
        raise BadInput(f"{data} holds none of the model's {split} classes (e.g. {classes[0] if classes else '-'}); "
                       "pass --split all to use every class of the data")
    seed_everything(seed)
    sampler = EpisodeSampler(dataset, n_way, k_shot, n_query, seed, classes=present, prepare=learner.encoder.prepare)
    if adapt == "prototypes":
        from quickadapt.meta.protonet import ProtoNet, ProtoNetConfig

        predict = ProtoNet(learner.encoder, ProtoNetConfig()).predict
    else:
        predict = learner.predict
    result = episode_accuracy(predict, sampler, episodes, device=dev,
                              description="episodes" if progress else None)
    return {"model": str(model), "method": manifest["meta"]["method"], "adapt": adapt, "split": split,
            "classes": len(present), "n_way": n_way, "k_shot": k_shot, "n_query": n_query, **result}


__all__ = ["run_meta_train", "run_episodes"]
