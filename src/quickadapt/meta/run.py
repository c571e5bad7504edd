"""One-call entry points behind `quickadapt meta-train` and `quickadapt episodes`.

`run_meta_train` builds the starting encoder (meta/start.py: conv4, 28x28 grey, GroupNorm from
a random init for images, pretrained MiniLM for text, or `encoder`), splits the classes (the
fixed Omniglot or CLINC150 split when the data holds its alphabets or domains, else a seeded
split by group or by class; a start from a trained model folder keeps the split stored with it,
a resume its checkpoint's split), optionally
pretrains it supervised (meta/pretrain.py, saved as `OUT/pretrained/`), meta-trains with
checkpoints in `OUT/checkpoint/` and writes the model folder; `resume=True` rebuilds the run
from the checkpoint. `run_episodes` measures N-way K-shot accuracy on a model's held-out
classes, adapting as meta-trained, by prototypes, or by fine-tuning (meta/finetune.py)."""
from __future__ import annotations

import functools
import numbers
import os
import shutil
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np
import torch

from quickadapt.data.episodes import (ELASTIC, MIN_GROUPS, ROTATIONS, ClassSplit, EpisodeSampler, check_augment,
                                      check_episode_shape, check_episode_spec, default_split, fixed_split_name,
                                      load_episode_data, split_kept_on)
from quickadapt import distributed
from quickadapt.errors import BadInput, LostProcess, Stopped, option
from quickadapt.evaluate.episodes import episode_accuracy
from quickadapt.meta import create_meta
from quickadapt.artifact import read_manifest, save_encoder, temp_stem
from quickadapt.meta.finetune import EpisodeFinetuner, FinetuneConfig
from quickadapt.meta.base import task_workers
from quickadapt.meta.memory import check_step_fits
from quickadapt.meta.io import (load_episode_learner, lost_encoder_source, save_meta_model, stored_class_split,
                               trained_as)
from quickadapt.meta.pretrain import KEYS as PRETRAIN_KEYS, PretrainConfig, budget_spent, pretrain
from quickadapt.meta.start import (build_start, check_method, default_scale, method_defaults, note_colour_read_grey,
                                   start_spec)
from quickadapt.meta.train import STATE_JSON, MetaTrainConfig, meta_train, read_checkpoint_json, stop_on_interrupt
from quickadapt.meta.validate import make_val_sampler
from quickadapt.output import check_output, sole_writer
from quickadapt.progress import log
from quickadapt.settings import build_config
from quickadapt.train import pick_device, random_state_kept, run_environment, seed_everything, usual_torch_modes

CHECKPOINT = "checkpoint"
PRETRAINED = "pretrained"  # the encoder after supervised pretraining, before meta-training
ADAPT = ("method", "prototypes", "finetune")
FIXED_FEATURE_METHODS = ("protonet", "matchingnet")  # predictions read the body's features as they are
TRAIN_KEYS = ("steps", "meta_batch", "time_budget", "checkpoint_every", "checkpoint_steps", "path", "grad_clip",
              "validate_every", "validate_episodes", "lr_halve_every")
SAMPLER_KEYS = ("augment", "mirrors", "warp")  # settings of the training episodes, not of the method
FINGERPRINT_LIMIT = 20000  # examples; larger sets are not hashed (a pass over all of them)
FLAGGED = {"steps": "--steps", "meta_batch": "--meta-batch", "time_budget": "--time-budget",
           "checkpoint_every": "--checkpoint-every"}  # run settings that have flags (and arguments) of their own
SHAPE_KEYS = ("data", "method", "n_way", "k_shot", "n_query", "seed", "rotations", "settings", "encoder")
# run settings a resume must keep: they shape the weights (learning rate schedule, clipping, the
# arithmetic's path) or which of them are kept (validation); steps, meta-batch and budgets may change
RESUME_KEYS = ("path", "grad_clip", "lr_halve_every", "validate_every", "validate_episodes")


def _owns_out(fn):
    """Meta-training writes `out` for minutes or hours: the first process holds `out` alone
    meanwhile (a second run on it is refused, output.sole_writer), and a run that fails before
    anything worth keeping is written (a full disk at the first checkpoint) removes the empty
    `out` it made, which would otherwise block the rerun until --force."""
    @functools.wraps(fn)
    def wrapper(*args, out, **kwargs):
        if not distributed.current().is_main:
            return fn(*args, out=out, **kwargs)
        with sole_writer(out):
            try:
                return fn(*args, out=out, **kwargs)
            except BaseException as exc:
                folder = Path(out)
                if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
                    folder.rmdir()
                if isinstance(exc, KeyboardInterrupt) and (folder / CHECKPOINT / STATE_JSON).is_file():
                    # a second Ctrl-C quits at once, but what the run saved so far is there to resume
                    message = (f"interrupted: the last checkpoint is kept in {folder / CHECKPOINT}; "
                               f"{option('resume', python='resume=True')} continues from it")
                    raise (Stopped(exc.signum, message) if isinstance(exc, Stopped) else KeyboardInterrupt(message)) from None
                if isinstance(exc, LostProcess) and (folder / CHECKPOINT / STATE_JSON).is_file():
                    raise LostProcess(f"{exc}; the last checkpoint is kept in {folder / CHECKPOINT}: "
                                      f"{option('resume', python='resume=True')} continues from it") from exc.__cause__
                raise
    return wrapper


@random_state_kept()  # it seeds the global generators: the caller's are put back
@usual_torch_modes()  # it trains, whatever the calling thread switched off
@distributed.launched
@_owns_out
def run_meta_train(
    data: str, *, method: str, n_way: int, k_shot: int, out: str | Path, n_query: int = 5, steps: int = 2000,
    meta_batch: int = 16, time_budget: float | None = None, settings: dict | None = None,
    encoder_settings: dict | None = None, rotations: bool | None = None, seed: int = 0, resume: bool = False,
    force: bool = False, device: str = "auto", checkpoint_every: float = 300.0, checkpoint_steps: int | None = None,
    progress: bool = True, on_step=None, encoder: str | None = None,
) -> dict:
    """`encoder`: where to start (None: conv4 from a random init for images, minilm for text).
    `rotations` (None: on for images, off otherwise). `settings` holds the method's settings,
    the training loop's (steps, validate_every...), the pretraining stage's (pretrain_steps...)
    `augment` (images: a small random affine change of every training image drawn; "elastic": a
    smooth random warp as well, of up to `warp` of the side, default 0.08) and `mirrors` (images:
    each training class's mirror image as one more class).

    Under torchrun the tasks of each meta-batch are shared out over the processes
    (quickadapt/distributed.py); the first writes the model and returns the summary, the others
    return {"rank": r} once training ends."""
    group = distributed.current()
    out = Path(out)
    check_episode_spec(data)
    check_episode_shape(n_way, k_shot, n_query)
    if resume and force:
        raise BadInput(f"{option('resume', python='resume=True')} continues the run in {option('out')} and {option('force', python='force=True')} "
                       "replaces it: pass one of them")
    if not resume:  # fail before loading anything; the old output is removed only once all is checked
        check_output(out, force, inputs=(data, encoder),
                     other_way=f", pass {option('resume', python='resume=True')} to continue it,")
    settings = dict(settings or {})
    given = dict(settings)  # every --set value, recorded in the model as the run was asked for
    flagged = sorted(set(settings) & set(FLAGGED))
    if flagged:  # two values for one thing: which wins would be a guess
        raise BadInput(f"{flagged[0]} is set by {option(flagged[0], FLAGGED[flagged[0]])}, not {option('settings', '--set')}")
    check_setting_names(method, settings)
    train_settings = {k: settings.pop(k) for k in list(settings) if k in TRAIN_KEYS}
    pre_cfg = build_config(PretrainConfig, {k: settings[k] for k in settings if k in PRETRAIN_KEYS}, "meta-train")
    dataset = load_episode_data(data)  # its modality picks the default start and rotations
    augment = settings.get("augment", False)
    check_augment(augment)  # before any work; the sampler checks it again
    if augment and dataset.modality != "image":
        raise BadInput(f"augment changes images; {data} is {dataset.modality} data (leave it off)")
    mirrors = settings.get("mirrors", False)
    if not isinstance(mirrors, bool):
        raise BadInput(f"mirrors must be true or false, got {mirrors!r}")
    if "warp" in settings and augment != "elastic":
        raise BadInput(f"warp sets the elastic warp's amplitude: it needs {option('settings', '--set')} augment=elastic")
    warp = settings.get("warp", ELASTIC["amplitude"])
    if mirrors and dataset.modality != "image":
        raise BadInput(f"mirrors flip images; {data} is {dataset.modality} data (leave them off)")
    if rotations is None:
        rotations = dataset.modality == "image"
    elif rotations and dataset.modality != "image":
        raise BadInput(f"rotations turn images; {data} is {dataset.modality} data (leave them off)")
    spec = {
        "data": str(data), "method": method, "n_way": int(n_way), "k_shot": int(k_shot), "n_query": int(n_query),
        "seed": int(seed), "rotations": bool(rotations), "settings": dict(settings),  # pretrain_* included
        "encoder": start_spec(encoder, dataset.modality, encoder_settings),
    }
    note_colour_read_grey(spec["encoder"], encoder_settings, dataset)
    settings = {k: v for k, v in settings.items() if k not in PRETRAIN_KEYS and k not in SAMPLER_KEYS}
    # hashing every input costs a pass over the data: skipped for very large sets
    fingerprint = dataset.fingerprint() if len(dataset) <= FINGERPRINT_LIMIT else None
    if fingerprint:
        spec["data_fingerprint"] = fingerprint  # not a SHAPE_KEY: checkpoints written before it lack it
    cfg = build_config(MetaTrainConfig, {"steps": steps, "meta_batch": meta_batch, "time_budget": time_budget,
                                         "checkpoint_every": checkpoint_every, "checkpoint_steps": checkpoint_steps,
                                         **train_settings}, "meta-train")
    ckpt = out / CHECKPOINT
    saved = read_checkpoint_json(ckpt) if resume else None
    if resume:
        check_resumable(saved, spec, cfg, out)
        note_other_threads(saved, out)
    dev = group.device(pick_device(device))

    split = resumed_split(saved, dataset, seed) if resume else start_split(encoder, dataset, seed)
    spec["class_split"] = split.to_dict()  # not a SHAPE_KEY: a resume reads it back (resumed_split)
    check_training_ways(data, split, n_way, rotations=rotations, mirrors=mirrors)
    seed_everything(seed)
    encoder, start = build_start(spec["encoder"], dataset.modality)
    check_method(method, encoder)
    learner = create_meta(method, encoder, **method_defaults(method, encoder, start, settings))
    sampler = EpisodeSampler(dataset, n_way, k_shot, n_query, seed, rotations=rotations, classes=split.train,
                             prepare=encoder.prepare_tensor, augment=augment, mirrors=mirrors, warp=warp)
    # a step that cannot fit grew until the out-of-memory killer ended the run without a word
    tasks = -(-cfg.meta_batch // group.size)  # this process's share of a meta-batch
    check_step_fits(encoder, dataset.inputs, n_way=n_way, k_shot=k_shot, n_query=n_query, device=dev,
                    tasks=task_workers(cfg.path, encoder, per_task_body=learner.per_task_body, n_tasks=tasks) or tasks)
    # early stopping on the validation classes (Omniglot: Early_Aramaic), never the test ones
    val_sampler, no_val = make_val_sampler(dataset, split.val, n_way=n_way, k_shot=k_shot, n_query=n_query, seed=seed,
                                           prepare=encoder.prepare_tensor) if cfg.validate_every else (None, None)
    if no_val:
        log(f"note: no early stopping: {no_val}; the last weights are kept")
    if no_val and split.by == "group" and more_groups(data):
        log(f"note: the split by group gave validation {len(split.val)} class{'es' if len(split.val) != 1 else ''}"
            f"{held_in(split, 'val')}: to validate, {more_groups(data)}")
    if len(split.test) < 2 and split.by == "group":
        log(f"note: the split by group holds out {len(split.test)} class{'es' if len(split.test) != 1 else ''} for "
            f"testing{held_in(split, 'test')}, too few for `quickadapt episodes` on them "
            f"({more_groups(data) + ', ' if more_groups(data) else ''}or use episodes --split all)")
    elif len(split.test) < 2:
        log(f"note: {len(dataset.classes)} classes leave {len(split.test)} held out for testing, too few for "
            "`quickadapt episodes` on them (use more classes, or episodes --split all)")
    # the old output goes only now, once the method, encoder and episodes have all been checked:
    # a run refused on them leaves the model that --force would have replaced
    group.barrier()  # every process has checked --out before the first one clears it
    if not resume and out.exists() and group.is_main:
        shutil.rmtree(out)
    with stop_on_interrupt() as interrupted:  # one Ctrl-C ends both stages, and the run is saved
        if pre_cfg.pretrain_steps and not resume:
            stop = pretrain_stop(pre_cfg, cfg.time_budget, group, interrupted)
            start["pretrain"] = pretrain(encoder, sampler, pre_cfg, seed=seed, device=dev, stop=stop,
                                         description="pretraining" if progress else None)
            # the pretrained body alone, so `quickadapt episodes OUT/pretrained` measures this stage
            if group.is_main:
                save_encoder(encoder, out / PRETRAINED, seed=seed,
                             strategy={"name": "pretrain", "params": asdict(pre_cfg)},
                             extra={"pretrain": start["pretrain"], "class_split": split.to_dict()})
            if cfg.time_budget is not None:  # the budget is the whole run's: pretraining spent part of it
                cfg = replace(cfg, time_budget=max(cfg.time_budget - start["pretrain"]["seconds"], 1e-3))
        elif pre_cfg.pretrain_steps:  # resumed: the stage ran before the first checkpoint
            start["pretrain"] = read_manifest(out / PRETRAINED).get("pretrain")
            done = start["pretrain"] or {}
            if done.get("stopped") not in (None, "steps"):  # pretraining keeps no checkpoint of its own
                log(f"note: pretraining stopped at step {done.get('steps')} of {pre_cfg.pretrain_steps} "
                    f"({done['stopped']}); the resumed run meta-trains from that encoder and does not pretrain further")
        summary = meta_train(learner, sampler, cfg, checkpoint_dir=ckpt, resume=resume, spec=spec, device=dev,
                             description=f"meta-training {method}" if progress else None, on_step=on_step,
                             val_sampler=val_sampler, interrupted=interrupted)
    if not group.is_main:  # the first process writes the model
        return {"rank": group.rank}
    if no_val:
        summary["validation"] = {"skipped": no_val}
    learner.cpu()
    info = {"n_way": n_way, "k_shot": k_shot, "n_query": n_query, "rotations": rotations, "mirrors": mirrors,
            # as given or by default (`set` holds only what was given)
            "augment": augment, **({"warp": warp} if augment == "elastic" else {}),
            "data": str(data), "set": given, "run": {k: v for k, v in asdict(cfg).items() if k in RESUME_KEYS},
            # not kept by a resume but they shape the weights: episodes per step (the last run's),
            # torchrun's processes (each draws its own dropout; sums round in another order), threads...
            "meta_batch": cfg.meta_batch, "processes": group.size, "environment": run_environment(dev),
            "start": start, "train": summary}
    for stale in out.glob(f".{CHECKPOINT}.*"):  # a killed run's half-written or superseded checkpoint folder
        shutil.rmtree(stale, ignore_errors=True)
    tmp_ckpt = out.with_name(f".{temp_stem(out)}.checkpoint")  # the swap replaces `out`: keep the checkpoint aside
    shutil.rmtree(tmp_ckpt, ignore_errors=True)
    shutil.move(str(ckpt), tmp_ckpt)
    # copied before the swap replaces `out`, so it is never lost
    keep_pretrained = {PRETRAINED: lambda p: shutil.copytree(out / PRETRAINED, p)} if (out / PRETRAINED).is_dir() else {}
    try:
        save_meta_model(learner, out, split=split, info=info, force=True, seed=seed,
                        data_fingerprint=fingerprint,
                        extra_files={CHECKPOINT: lambda p: shutil.copytree(tmp_ckpt, p), **keep_pretrained})
    except BaseException:
        if not ckpt.exists():
            shutil.move(str(tmp_ckpt), ckpt)
        raise
    shutil.rmtree(tmp_ckpt, ignore_errors=True)
    return {"out": str(out), "method": method, "n_way": n_way, "k_shot": k_shot, "start": start,
            "classes": {"train": len(split.train), "val": len(split.val), "test": len(split.test)}, **summary}


def pretrain_stop(pre_cfg: PretrainConfig, time_budget: float | None, group, interrupted):
    """`pretrain`'s `stop(seconds)`: its own budget, the run's budget or Ctrl-C, with the same
    answer on every process (the first one's clock decides)."""
    def stop(seconds: float) -> str | None:
        reason = budget_spent(pre_cfg, seconds) or (
            "time_budget" if time_budget is not None and seconds > time_budget else None)
        if group.any(interrupted() or (group.is_main and reason is not None)):
            return "interrupt" if interrupted() or reason is None else reason
        return None
    return stop


def check_setting_names(method: str, settings: dict) -> None:
    """An unknown --set key is named with every setting meta-train takes, the method's and the run's."""
    from quickadapt.meta import META

    if method not in META:
        return  # create_meta names the method (with a suggestion)
    own = {f.name for f in fields(META.get(method).Config)}
    unknown = sorted(set(settings) - own - set(TRAIN_KEYS) - set(PRETRAIN_KEYS) - set(SAMPLER_KEYS))
    if unknown:
        run_keys = sorted(set(TRAIN_KEYS) - set(FLAGGED)) + list(PRETRAIN_KEYS) + list(SAMPLER_KEYS)
        raise BadInput(f"unknown setting {unknown[0]!r} for meta-train: {method} takes {', '.join(sorted(own))}; "
                       f"the run takes {', '.join(run_keys)} (docs/meta.md)")


def start_split(encoder: str | None, dataset, seed: int) -> ClassSplit:
    """A run that starts from a trained model folder keeps the class split stored with it, where
    the data holds any of its classes, so the new run never validates or tests on classes its
    start was trained on; else the data's default split."""
    stored = stored_class_split(encoder) if encoder else None
    kept = split_kept_on(stored, dataset, f"the start encoder {encoder}") if stored is not None else None
    return kept if kept is not None else default_split(dataset, seed=seed)


def resumed_split(saved: dict, dataset, seed: int) -> ClassSplit:
    """A resumed run meta-trains on the classes it began with: the split its checkpoint stored.
    Checkpoints that stored none were split by the rule of their day, which split a folder's
    classes, not its groups: rebuilt so, since a split by group would train on other classes."""
    stored = saved.get("spec", {}).get("class_split")
    if stored is not None:
        return ClassSplit.from_dict(stored)
    split = default_split(dataset, seed=seed, by_group=False)
    if split.by == "class" and dataset.groups is not None and len(set(dataset.groups.tolist())) >= MIN_GROUPS:
        log("note: the checkpoint was written before folders of groups were split by group: the resumed run "
            "keeps its split by class (train afresh for a split by group)")
    return split


def held_in(split: ClassSplit, part: str) -> str:
    """' (group X)' or ' (groups X, Y)': the groups a split by group gave `part`."""
    names = split.groups.get(part) or []
    return f" (group{'s' if len(names) != 1 else ''} {', '.join(names)})" if names else ""


def more_groups(data) -> str:
    """What helps a split by group that left a part too few classes; a built-in set's groups are what they are."""
    if str(data).startswith("builtin:"):
        return ""
    return f"add classes to the {'folder' if Path(data).expanduser().is_dir() else 'file'}'s groups, or more groups"


def check_training_ways(data, split: ClassSplit, n_way: int, *, rotations: bool, mirrors: bool) -> None:
    """A split by group can leave training fewer classes than the ways, which the sampler would
    only ask to be more classes; this names the groups. Rotations and mirrors make new classes, as in the sampler."""
    copies = (len(ROTATIONS) if rotations else 1) * (2 if mirrors else 1)
    if split.by != "group" or len(split.train) * copies >= n_way:
        return
    made = " and ".join(w for w, on in (("rotations", rotations), ("mirror images", mirrors)) if on)
    made = f", {len(split.train) * copies} with their {made}" if made else ""
    helps = f", or {more_groups(data)}" if more_groups(data) else ""
    raise BadInput(f"{data}: the split by group trains on {len(split.train)} class{'es' if len(split.train) != 1 else ''}"
                   f"{held_in(split, 'train')}{made}, fewer than {n_way}-way episodes need; lower {option('n_way', '--ways')}{helps}")


def check_resumable(saved: dict, spec: dict, cfg: MetaTrainConfig, out: Path) -> None:
    """Refuse a --resume that would not continue the stored run: other data, method or shape, or
    fewer steps than the checkpoint has already done."""
    stored = saved.get("spec", {})
    differ = [k for k in SHAPE_KEYS if stored.get(k) != spec[k] and not (k == "data" and same_place(stored, spec))
              and not (k == "encoder" and same_start(stored.get(k), spec[k]))]
    if differ:
        k = differ[0]
        raise BadInput(f"{option('resume')}: {k} is {spec[k]!r} but the checkpoint in {out} was trained with {stored.get(k)!r}")
    if stored.get("data_fingerprint") and spec.get("data_fingerprint") \
            and stored["data_fingerprint"] != spec["data_fingerprint"]:
        raise BadInput(f"{option('resume')}: the data in {spec['data']} differs from the data the checkpoint in {out} was "
                       f"trained on (its fingerprint differs); train afresh with {option('force', python='force=True')}")
    run = saved.get("config") or {}  # checkpoints keep the run's config; older ones lack some keys
    changed = [k for k in RESUME_KEYS if k in run and run[k] != getattr(cfg, k)]
    if changed:
        k = changed[0]
        raise BadInput(f"{option('resume')}: {k} is {getattr(cfg, k)!r} but the checkpoint in {out} was trained with "
                       f"{run[k]!r}; pass {option('settings', '--set')} {k}={run[k]} to continue it (steps, meta-batch "
                       "and budgets may change)")
    done = saved.get("state", {}).get("step", 0)
    if cfg.steps < done:
        raise BadInput(f"{option('resume')}: the checkpoint in {out} has done {done} steps, more than {option('steps')} {cfg.steps}; "
                       f"pass {option('steps')} {done} or more")


def note_other_threads(saved: dict, out: Path) -> None:
    """A resume ends equal to an uninterrupted run only with the thread count it had: float sums
    split over another number of threads round otherwise (maml on Omniglot, 3 steps at 1 thread
    resumed to 5 at 2: weights 3e-8 from the uninterrupted run's, equal at 1). Allowed, but said."""
    before, now = saved.get("threads"), torch.get_num_threads()
    if before is not None and before != now:
        log(f"note: the checkpoint in {out} was written with {before} torch thread{'s' if before != 1 else ''} and this "
            f"run has {now}: the weights will equal an uninterrupted run's only to rounding (OMP_NUM_THREADS={before} "
            "keeps them equal)")


def same_place(stored: dict, spec: dict) -> bool:
    """The data may be spelt differently: with fingerprints on both sides they decide (moved or
    renamed data resumes; see check_resumable), without them one folder or file reached by two
    paths (./x/ and /abs/x) is the same."""
    if stored.get("data_fingerprint") and spec.get("data_fingerprint"):
        return True
    a, b = str(stored.get("data")), str(spec["data"])
    if a.startswith("builtin:") or b.startswith("builtin:"):
        return a == b
    return os.path.realpath(a) == os.path.realpath(b)


def same_start(stored, spec: dict) -> bool:
    """The starting encoder may be spelt differently too: a folder named from another working
    directory (./enc, then runs/enc from above it) is the same folder, with the same settings. A
    checkpoint from before folders were recorded compares the names as given."""
    if not isinstance(stored, dict) or stored.get("settings") != spec.get("settings"):
        return False
    if stored.get("folder") and spec.get("folder"):
        return stored["folder"] == spec["folder"]
    return stored.get("name") == spec.get("name")


@random_state_kept()  # it seeds the global generators: the caller's are put back
@usual_torch_modes()  # it may fine-tune on each support set
def run_episodes(
    model: str | Path, data: str, *, n_way: int, k_shot: int, episodes: int = 600, n_query: int = 15,
    split: str = "test", adapt: str = "method", seed: int = 0, device: str = "auto", progress: bool = True,
    settings: dict | None = None, split_from: str | Path | None = None,
) -> dict:
    """Mean accuracy and 95% CI over `episodes` seeded episodes from the model's `split` classes
    (`all`: every class of `data`). `model`: a meta-trained folder, or any encoder (name or
    folder) as the baseline without meta-training, on the data's default split (or on the split
    stored with its folder: plain_encoder_split). `adapt`:
    "method" (the way it was meta-trained; prototypes for a plain encoder), "prototypes"
    (nearest class mean of the body's features, any method) or "finetune" (a few steps on each
    support set against its prototypes, meta/finetune.py; `settings`: finetune_steps, finetune_lr).
    `settings` views=N (images; fixed-feature predictions or after fine-tuning): each image's
    features are the mean over it and N random affine views of it (meta/views.py).
    `split_from`: a folder that stores a class split (a meta-trained model, its pretrained/
    stage, a model fitted on one): a plain encoder is scored on that split's classes, so a
    baseline and a meta-trained model are measured on the same held-out classes."""
    if adapt not in ADAPT:
        raise BadInput(f"{option('adapt')} must be one of {', '.join(ADAPT)}, got {adapt!r}")
    settings = dict(settings or {})
    known = sorted(["views", *(f.name for f in fields(FinetuneConfig))])
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise BadInput(f"unknown setting {unknown[0]!r} for episodes: valid settings are {', '.join(known)}")
    views = settings.pop("views", 0)
    if isinstance(views, bool) or not isinstance(views, int) or views < 0:
        raise BadInput(f"views must be a whole number >= 0, got {views!r}")
    if settings and adapt != "finetune":
        raise BadInput(f"settings ({', '.join(settings)}) apply to {option('adapt')} finetune only")
    ft_cfg = build_config(FinetuneConfig, settings, f"{option('adapt')} finetune") if adapt == "finetune" else None
    check_episode_shape(n_way, k_shot, n_query)
    if isinstance(episodes, bool) or not isinstance(episodes, numbers.Integral) or episodes < 1:
        raise BadInput(f"{option('episodes')} must be a whole number >= 1, got {episodes!r}")
    seed_everything(seed)  # a random-init baseline (`episodes conv4`) is seeded too
    learner, manifest = load_episode_learner(model)
    dev = pick_device(device)
    learner.to(dev).eval()
    dataset = load_episode_data(data)
    if dataset.modality != learner.encoder.modality:
        raise BadInput(f"{data} is {dataset.modality} data but the model reads {learner.encoder.modality}")
    class_split, origin = episode_split(model, manifest, dataset, seed, split_from)
    classes = dataset.classes if split == "all" else class_split.part(split)
    present = sorted(set(classes) & set(dataset.classes))
    if not classes:  # a plain encoder on data too small for a default split's held-out part, or a stored split
        raise BadInput(f"{data}: {origin} leaves none of its {len(dataset.classes)} classes for {split}; "
                       f"pass {option('split')} all to use every class of the data")
    if not present:
        raise BadInput(f"{data} holds none of the model's {split} classes (e.g. {classes[0]}); "
                       f"pass {option('split')} all to use every class of the data")
    if split != "all" and len(present) < n_way <= len(dataset.classes):  # the sampler's message cannot say this
        lower = f", or lower {option('n_way', '--ways')}" if len(present) >= 2 else ""  # 2 ways is the least
        raise BadInput(f"{data}: {len(present)} of its {len(dataset.classes)} classes "
                       f"{'is a' if len(present) == 1 else 'are'} {split} class{'' if len(present) == 1 else 'es'}, "
                       f"fewer than {n_way}-way episodes need; pass {option('split')} all to use every class{lower}")
    method = manifest["meta"]["method"] if manifest is not None else None  # None: no meta-training
    shown_adapt = "prototypes" if manifest is None and adapt == "method" else adapt
    seed_everything(seed)
    fixed = adapt == "prototypes" or (adapt == "method" and learner.name in FIXED_FEATURE_METHODS)
    if views and learner.encoder.modality != "image":
        raise BadInput(f"views change images; {model} reads {learner.encoder.modality} (leave views at 0)")
    if views and not fixed and adapt != "finetune":
        how = f"{option('adapt')} {adapt}" + (f" with {learner.name}" if manifest is not None else "")
        raise BadInput(f"views apply to predictions from fixed features ({option('adapt')} prototypes, or method for "
                       f"{' and '.join(FIXED_FEATURE_METHODS)}) and to {option('adapt')} finetune, not to {how}")
    per_episode_inputs = episodes * n_way * (k_shot + n_query)
    # embedding every held-out input once is cheaper than per episode, and the only way with views
    if fixed and (views or per_episode_inputs > int(np.isin(dataset.labels, present).sum())):
        sampler, predict = fixed_feature_episodes(learner, manifest, dataset, present, adapt, n_way=n_way,
                                                  k_shot=k_shot, n_query=n_query, seed=seed, device=dev, views=views)
    else:
        sampler = EpisodeSampler(dataset, n_way, k_shot, n_query, seed, classes=present,
                                 prepare=learner.encoder.prepare_tensor)
        predict = episode_predictor(learner, adapt, ft_cfg, seed, views)
    result = episode_accuracy(predict, sampler, episodes, device=dev, description="episodes" if progress else None)
    # a plain encoder's folder may hold a trained encoder (OUT/pretrained, a fitted model): say how it was trained
    trained = trained_as(model) if manifest is None else None
    return {"model": str(model), "method": method, "trained": trained, "adapt": shown_adapt, "split": split, "views": views,
            "classes": len(present), "class_names": present,
            "split_source": "every class of the data" if split == "all" else origin,
            "n_way": n_way, "k_shot": k_shot, "n_query": n_query, **result}


def episode_split(model, manifest, dataset, seed: int, split_from) -> tuple[ClassSplit, str]:
    """The class split episodes draw from, and where it came from: `split_from`'s stored split,
    a meta-trained model's own, or a plain encoder's (plain_encoder_split)."""
    if split_from is not None:
        return borrowed_split(model, manifest, dataset, split_from)
    if manifest is not None:
        return ClassSplit.from_dict(manifest["meta"]["class_split"]), "the model's class split"
    return plain_encoder_split(model, dataset, seed)


def borrowed_split(model, manifest, dataset, split_from) -> tuple[ClassSplit, str]:
    """The split stored with the folder `split_from`, on `dataset` (split_kept_on). A model that
    carries another split of its own keeps it: its training classes must never be tested on."""
    if not Path(str(split_from)).expanduser().is_dir():
        raise BadInput(f"{option('split_from', '--split-from')} {split_from}: no such model folder")
    borrowed = stored_class_split(Path(str(split_from)).expanduser())
    if borrowed is None:
        raise BadInput(f"{option('split_from', '--split-from')} {split_from}: stores no class split (give a folder "
                       "meta-train wrote, its pretrained/ folder, or a model fitted on one)")
    own = ClassSplit.from_dict(manifest["meta"]["class_split"]) if manifest is not None else stored_class_split(model)
    if own is not None and own.to_dict() != borrowed.to_dict():
        raise BadInput(f"{model} stores a class split of its own, other than {split_from}'s, and is scored on it so "
                       f"that none of its training classes is tested on; drop {option('split_from', '--split-from')}")
    kept = split_kept_on(borrowed, dataset, str(split_from))
    if kept is None:
        raise BadInput(f"{dataset.name or 'the data'} holds none of the classes of the split stored with {split_from}")
    return kept, f"the class split stored with {split_from}"


def plain_encoder_split(model, dataset, seed: int) -> tuple[ClassSplit, str]:
    """The split for an encoder used as it is, and where it came from: the one stored with its
    folder (OUT/pretrained, a model fitted on a meta-trained encoder) where the data holds any of
    its classes, so its training classes are never tested on; else the data's default split."""
    stored = stored_class_split(model)
    kept = split_kept_on(stored, dataset, str(model)) if stored is not None else None
    if kept is not None:
        return kept, f"the class split stored with {model}"
    lost = lost_encoder_source(model) if stored is None else None
    if lost:  # the default split below may test on classes the encoder was meta-trained on
        log(f"note: {model}'s encoder came from {lost}: if it was meta-trained, the "
            f"classes it trained on are unknown and may be among those tested here; pass "
            f"{option('split_from', '--split-from')} with the folder meta-train wrote to test on its held-out classes")
    fixed = fixed_split_name(dataset)
    return default_split(dataset, seed=seed), f"the fixed {fixed} split" if fixed else f"the default split (seed {seed})"


def episode_predictor(learner, adapt: str, ft_cfg, seed: int, views: int = 0):
    """How each episode's queries are classified from its raw inputs (`views`: fine-tuning only)."""
    if adapt == "finetune":
        scale = learner.cfg.scale if learner.name == "protonet" else default_scale(learner.encoder)
        return EpisodeFinetuner(learner.encoder, ft_cfg, scale=scale, seed=seed, views=views).predict
    if adapt == "prototypes":
        from quickadapt.meta.protonet import ProtoNet, ProtoNetConfig

        return ProtoNet(learner.encoder, ProtoNetConfig()).predict
    return learner.predict


def fixed_feature_episodes(learner, manifest, dataset, present, adapt, *, n_way, k_shot, n_query, seed, device,
                           views: int = 0):
    """Episodes over features computed once per example, for predictions that never change the
    body (nearest prototypes, ProtoNet, Matching Networks): 600 five-way one-shot episodes with
    15 queries embed 48,000 inputs one episode at a time but only the held-out examples (3,000
    utterances for CLINC's two test domains) this way, with the same episodes and predictions."""
    from torch import nn

    from quickadapt.data.dataset import Dataset
    from quickadapt.encoders.base import embed
    from quickadapt.meta.protonet import ProtoNet, ProtoNetConfig

    held_out = dataset.subset(np.flatnonzero(np.isin(dataset.labels, present)))
    # the embedding cache is for pristine pretrained encoders (a baseline such as `episodes minilm`)
    pristine = manifest is None and getattr(learner.encoder, "is_pretrained", False)
    if views:
        from quickadapt.meta.views import embed_views

        feats = embed_views(learner.encoder, held_out.inputs, views, seed=seed, device=device).numpy()
    else:
        feats = embed(learner.encoder, held_out.inputs, device=device, cache=pristine)
    features = Dataset("features", feats, held_out.labels, name=held_out.name)
    sampler = EpisodeSampler(features, n_way, k_shot, n_query, seed, classes=present)
    if adapt == "prototypes":
        head = ProtoNet(nn.Identity(), ProtoNetConfig())
    else:
        head = type(learner)(nn.Identity(), learner.cfg)  # the same method on features
    return sampler, head.eval().to(device).predict


__all__ = ["run_meta_train", "run_episodes"]
