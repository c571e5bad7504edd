"""N-way K-shot episodes: class splits by group, and a seeded sampler that owns its generator.

An `Episode` holds `n_way * k_shot` support and `n_way * n_query` query examples, grouped by
class (labels 0..n_way-1 in `classes` order). `EpisodeSampler` prepares every input once (e.g.
28x28 grey tensors through an encoder's `prepare`), then draws episodes from a `torch.Generator`
seeded at construction, so the same seed gives the same episodes. With `rotations=True` each
class also appears rotated by 90, 180 and 270 degrees as three new classes (the standard
Omniglot augmentation; use it for meta-training classes only); `mirrors=True` adds each class's
mirror image (left-right flip) as one more new class, rotated too with rotations on: a flipped
character is another character, so twice the classes to learn from. With `augment=True` every image
drawn also gets its own small random affine change (rotation, scale, shift; `jitter_images`),
which keeps its class: more variety for meta-training on few classes, never for evaluation.
`augment="elastic"` adds a smooth random warp on top (ELASTIC; `warp` sets its amplitude)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from quickadapt.data.dataset import Dataset
from quickadapt.errors import BadInput, option
from quickadapt.progress import log

# The fixed Omniglot split for the small background sets (8 alphabets, 242 characters).
OMNIGLOT_SPLIT = {
    "train": ("Balinese", "Greek", "Korean", "Latin", "Japanese_(katakana)"),
    "val": ("Early_Aramaic",),
    "test": ("Sanskrit", "Tagalog"),
}
# The fixed CLINC150 split by intent domain (15 intents each): 90 / 30 / 30 intents. Small talk
# and meta (the assistant itself) validate; banking and credit cards, close to each other and
# far from the training domains, test.
CLINC_SPLIT = {
    "train": ("kitchen_and_dining", "home", "auto_and_commute", "travel", "utility", "work"),
    "val": ("small_talk", "meta"),
    "test": ("banking", "credit_cards"),
}
FIXED_SPLITS = {"Omniglot": OMNIGLOT_SPLIT, "CLINC150": CLINC_SPLIT}
MIN_GROUPS = 3  # other data with groups is split by group when each part can have one
OUT_OF_SCOPE_GROUP = "oos"  # CLINC150's out-of-scope rows: no intent to learn, never a class
ROTATIONS = (0, 90, 180, 270)
JITTER = {"degrees": 10.0, "scale": 0.1, "shift": 0.1}  # shift: a fraction of the image side
# augment="elastic": a smooth random displacement on top of the affine change (Simard et al.
# 2003 distorted handwritten digits so), drawn on a 4x4 grid of control points, each moved by
# up to ELASTIC of the image side (2.2 pixels at 28x28) and interpolated bicubically between
ELASTIC = {"grid": 4, "amplitude": 0.08}
AUGMENT = (False, True, "elastic")


def check_augment(augment) -> None:
    if augment not in AUGMENT:
        raise BadInput(f"augment must be true, false or elastic, got {augment!r}")


def jitter_images(x: torch.Tensor, generator: torch.Generator, warp: float = 0.0) -> torch.Tensor:
    """Each image of the (n, C, H, W) batch rotated by up to JITTER degrees either way, scaled
    by 1 +- JITTER scale and shifted by up to JITTER shift of its side, drawn from `generator`
    (with `warp` > 0, then warped by a smooth random displacement of up to `warp` of the side on
    ELASTIC's grid of control points); the border is filled
    with the image's corner value (the background)."""
    n = len(x)
    u = lambda: torch.rand(n, generator=generator) * 2 - 1  # noqa: E731  (uniform in [-1, 1])
    angle = torch.deg2rad(u() * JITTER["degrees"])
    scale = 1 + u() * JITTER["scale"]
    shift = torch.stack([u(), u()], 1) * JITTER["shift"] * 2  # affine_grid's coordinates span 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    if warp:  # drawn after the affine change's numbers, so augment=true draws as it always did
        g = ELASTIC["grid"]
        control = (torch.rand(n, 2, g, g, generator=generator) * 2 - 1) * warp * 2
        field = torch.nn.functional.interpolate(control.to(x.dtype), size=x.shape[-2:], mode="bicubic",
                                                align_corners=True)
        grid = grid + field.permute(0, 2, 3, 1)
    background = x[:, :, :1, :1]
    out = torch.nn.functional.grid_sample(x - background, grid, padding_mode="zeros", align_corners=False)
    return out + background


def turn_images(x: torch.Tensor, rot: int, mirrored: bool) -> torch.Tensor:
    """The (n, C, H, W) images mirrored left-right (if `mirrored`), then rotated by `rot` degrees."""
    if mirrored:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, rot // 90, dims=(-2, -1)) if rot else x


@dataclass
class Episode:
    """One task (tensors (n, ...)) or a stack of tasks (tensors (T, n, ...), `classes` a list per task)."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    classes: list

    def to(self, device) -> "Episode":
        return Episode(self.support_x.to(device), self.support_y.to(device), self.query_x.to(device),
                       self.query_y.to(device), self.classes)

    def task(self, t: int) -> "Episode":
        """Task `t` of a stacked batch."""
        return Episode(self.support_x[t], self.support_y[t], self.query_x[t], self.query_y[t], self.classes[t])

    def slice(self, start: int, stop: int) -> "Episode":
        """Tasks start..stop-1 of a stacked batch, still stacked."""
        return Episode(self.support_x[start:stop], self.support_y[start:stop], self.query_x[start:stop],
                       self.query_y[start:stop], self.classes[start:stop])

    @property
    def n_tasks(self) -> int:
        return self.support_x.shape[0]


def stack_episodes(episodes: Sequence[Episode]) -> Episode:
    return Episode(
        torch.stack([e.support_x for e in episodes]), torch.stack([e.support_y for e in episodes]),
        torch.stack([e.query_x for e in episodes]), torch.stack([e.query_y for e in episodes]),
        [e.classes for e in episodes],
    )


@dataclass(frozen=True)
class ClassSplit:
    """Which classes meta-train, validate and test; stored in a meta-trained model's manifest."""

    train: list[str]
    val: list[str]
    test: list[str]
    by: str = "group"  # "group" (whole alphabets / domains) or "class" (a seeded split of classes)
    groups: dict = field(default_factory=dict)  # part -> group names, when split by group

    def part(self, name: str) -> list[str]:
        if name == "all":
            return sorted(self.train + self.val + self.test)
        if name not in ("train", "val", "test"):
            raise BadInput(f"{option('split')} must be train, val, test or all, got {name!r}")
        return getattr(self, name)

    def to_dict(self) -> dict:
        return {"train": self.train, "val": self.val, "test": self.test, "by": self.by, "groups": self.groups}

    @classmethod
    def from_dict(cls, d: dict) -> "ClassSplit":
        return cls(list(d["train"]), list(d["val"]), list(d["test"]), d.get("by", "group"), dict(d.get("groups", {})))


def split_classes(
    data: Dataset, *, train_groups: Sequence[str], val_groups: Sequence[str] = (), test_groups: Sequence[str] = (),
) -> ClassSplit:
    """Split `data`'s classes by group (every class of a group goes to one part)."""
    data.require_labels()
    if data.groups is None:
        raise BadInput(f"{data.name or 'data'}: has no groups (e.g. alphabets) to split classes by")
    groups = np.asarray(data.groups, dtype=object)
    present = set(groups.tolist())
    parts = {"train": list(train_groups), "val": list(val_groups), "test": list(test_groups)}
    seen: set = set()
    out = {}
    for part, names in parts.items():
        missing = [g for g in names if g not in present]
        if missing:
            raise BadInput(f"{data.name or 'data'}: no group {missing[0]!r} (groups: {', '.join(sorted(present))})")
        twice = seen & set(names)
        if twice:
            raise BadInput(f"group {sorted(twice)[0]!r} is in two parts of the class split")
        seen |= set(names)
        mask = np.isin(groups, names)
        out[part] = sorted(set(data.labels[mask].tolist()))
    return ClassSplit(out["train"], out["val"], out["test"], "group", {k: list(v) for k, v in parts.items()})


def split_classes_randomly(data: Dataset, *, val: float = 0.1, test: float = 0.2, seed: int = 0) -> ClassSplit:
    """A seeded split of the classes themselves (for data without groups)."""
    data.require_labels()
    classes = data.classes
    order = np.random.default_rng(seed).permutation(len(classes))
    n_test, n_val = int(round(test * len(classes))), int(round(val * len(classes)))
    pick = lambda idx: sorted(classes[i] for i in idx)  # noqa: E731
    return ClassSplit(pick(order[n_test + n_val:]), pick(order[n_test:n_test + n_val]), pick(order[:n_test]), "class")


def split_groups_randomly(data: Dataset, *, val: float = 0.1, test: float = 0.2, seed: int = 0) -> ClassSplit:
    """A seeded split of the groups (every class of a group goes to one part): about `test` and
    `val` of them held out, at least one group each, and the rest (at least one) to train on."""
    names = sorted(set(np.asarray(data.groups).tolist()))
    if len(names) < MIN_GROUPS:
        raise BadInput(f"{data.name or 'data'}: {len(names)} groups are too few to split by "
                       f"(train, validation and test need one each)")
    order = np.random.default_rng(seed).permutation(len(names))
    n_test = max(1, int(round(test * len(names))))
    n_val = max(1, int(round(val * len(names))))
    pick = lambda idx: sorted(names[i] for i in idx)  # noqa: E731
    return split_classes(data, train_groups=pick(order[n_test + n_val:]), val_groups=pick(order[n_test:n_test + n_val]),
                         test_groups=pick(order[:n_test]))


def fixed_split_plus(data: Dataset, name: str, fixed: dict, present: set) -> ClassSplit:
    """The fixed split, with any groups the data holds beyond it added to training: its
    validation and test groups stay as they are, so figures on them stay comparable, and no
    group is dropped without a word. Exactly the fixed groups give exactly the fixed split."""
    extra = sorted(present - {g for part in fixed.values() for g in part})
    split = split_classes(data, train_groups=list(fixed["train"]) + extra, val_groups=fixed["val"],
                          test_groups=fixed["test"])
    if extra:
        n_classes = len(set(data.labels[np.isin(np.asarray(data.groups, dtype=object), extra)].tolist()))
        shown = ", ".join(extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
        log(f"note: {data.name or 'data'}: the fixed {name} split, with {len(extra)} group{'s' if len(extra) != 1 else ''} "
            f"beyond it ({shown}; {n_classes} class{'es' if n_classes != 1 else ''}) added to training; its validation "
            f"and test groups are unchanged")
    return split


def default_split(data: Dataset, seed: int = 0, *, by_group: bool = True) -> ClassSplit:
    """The fixed Omniglot (alphabets) or CLINC150 (domains) split when the data holds all of its
    groups (other groups beside them go to training, fixed_split_plus); else, for data with at least MIN_GROUPS groups (a folder of `group/class/` folders), a
    seeded split of the groups, so no group's classes are in two parts; else a seeded class split.
    `by_group=False` skips the seeded group split: the rule of checkpoints that stored no split."""
    if data.groups is not None:
        present = set(np.asarray(data.groups).tolist())
        name = fixed_split_name(data)
        if name is not None:
            return fixed_split_plus(data, name, FIXED_SPLITS[name], present)
        if by_group and len(present) >= MIN_GROUPS:
            return split_groups_randomly(data, seed=seed)
        if by_group:
            log(f"note: {data.name or 'data'}: {len(present)} group{'s are' if len(present) != 1 else ' is'} too few to "
                f"split by (train, validation and test need one each): its classes are split instead, so classes of "
                f"one group appear in several parts")
    return split_classes_randomly(data, seed=seed)


def fixed_split_name(data: Dataset) -> str | None:
    """Which fixed split (FIXED_SPLITS) `data` gets by default: the one whose groups it all
    holds, whatever the seed; None when its default split is seeded."""
    if data.groups is None:
        return None
    present = set(np.asarray(data.groups).tolist())
    for name, fixed in FIXED_SPLITS.items():
        if all(g in present for part in fixed.values() for g in part):
            return name
    return None


def split_kept_on(stored: ClassSplit, data: Dataset, source: str) -> ClassSplit | None:
    """A model's stored split on `data`: each part restricted to the classes the data holds,
    and the data's other classes added to training (a note says how many), so no class the
    model trained on is tested; None when the data holds none of its classes."""
    have = set(data.classes)
    if not have & set(stored.part("all")):
        return None
    train, val, test = ([c for c in stored.part(p) if c in have] for p in ("train", "val", "test"))
    other = sorted(have - set(stored.part("all")))
    groups = {p: list(g) for p, g in stored.groups.items()}
    if other and data.groups is not None and groups:
        named = {g for names in groups.values() for g in names}
        new = sorted(set(np.asarray(data.groups, dtype=object)[np.isin(data.labels, other)].tolist()) - named)
        groups["train"] = groups.get("train", []) + new
    log(f"note: {data.name or 'data'}: the class split stored with {source} is kept ({len(train)} train, {len(val)} "
        f"validation, {len(test)} test classes of it here)"
        + (f"; the data's {len(other)} other class{'es go' if len(other) != 1 else ' goes'} to training" if other else ""))
    return ClassSplit(sorted(train + other), val, test, stored.by, groups)


def check_episode_spec(spec) -> None:
    """Episodes read data by name (a path or builtin:NAME): the name is recorded with the class
    split, and --resume checks it. An in-memory Dataset is refused by name, not by a TypeError."""
    if not isinstance(spec, (str, os.PathLike)):
        raise BadInput(f"data must be a folder, a file or builtin:NAME, got a {type(spec).__name__}; "
                       "meta-training records where its data came from (write it as class folders or a csv first)")


def load_episode_data(spec: str) -> Dataset:
    """Labelled data for episodes. A folder may nest classes (`root/alphabet/character/*.png`):
    every folder that holds images is a class named by its path below root, and its top folder
    is its group (a class folder right below root, beside group folders, is a group of its own).
    A text file's optional `group` column gives its classes' groups the same way. `builtin:NAME`
    and files load as usual, less CLINC150's out-of-scope rows."""
    from quickadapt.data.loaders import (IMAGE_EXTS, check_folder_label, images_under, load_dataset,
                                         note_several_frames, note_skipped, refuse_imageless_leaves)

    check_episode_spec(spec)
    path = Path(str(spec)).expanduser()
    builtin = str(spec).startswith("builtin:")
    if builtin or not path.is_dir():
        data = load_dataset(spec, groups=True)
        # only CLINC150's `oos` is out of scope: a user's group of that name is a group like any other
        if builtin and data.groups is not None and OUT_OF_SCOPE_GROUP in set(np.asarray(data.groups).tolist()):
            data = data.subset(np.flatnonzero(np.asarray(data.groups) != OUT_OF_SCOPE_GROUP))
        return data
    paths, labels, skipped = [], [], {}
    for p in sorted(images_under(path, skipped)):  # sorted as paths: the order this loader always had
        rel = p.relative_to(path)
        if len(rel.parts) < 2:
            raise BadInput(f"{spec}: image {rel} is not in a class folder; put images in root/<class>/ (or root/<group>/<class>/)")
        paths.append(str(p))
        labels.append("/".join(rel.parts[:-1]))
    if not paths:
        refuse_text_files(str(spec), skipped)
        refuse_imageless_leaves(path, str(spec))  # names an empty class folder
        raise BadInput(f"{spec}: no images found (looked for {'/'.join(e[1:] for e in IMAGE_EXTS)} files in class folders)")
    for label in sorted(set(labels)):
        check_folder_label(str(spec), label)
    refuse_imageless_leaves(path, str(spec))  # as fit refuses them: an empty class folder never vanishes unsaid
    note_skipped(str(spec), skipped)
    note_several_frames(str(spec), paths)
    nested = any("/" in lab for lab in labels)
    if nested:
        note_loose_classes(str(spec), labels)
    # a loose class's group is its own name: one class folder beside group folders must not turn
    # the split by group into a split by class, which would train on the held-out groups' classes
    groups = np.asarray([lab.split("/", 1)[0] for lab in labels], dtype=object) if nested else None
    return Dataset("image", paths, np.asarray(labels, dtype=object), str(spec), groups)


def refuse_text_files(shown: str, skipped: dict) -> None:
    """A tree of .txt files (one per example, `group/class/*.txt`) is text meant as episodes'
    data: say where text goes, as fit does (loaders.refuse_imageless_class), and where its groups go."""
    if ".txt" in skipped:  # episodes need labels: not loaders.TEXT_HINT, which says when they are needed
        raise BadInput(f"{shown}: the class folders hold .txt files, not images; text data goes in one .csv or .jsonl "
                       "file: with columns text,label (and an optional `group` column to split the classes by group)")


def note_loose_classes(shown: str, labels: Sequence[str]) -> None:
    """Name the class folders at the top of a tree of `group/class/` folders: each is a group of its own."""
    loose = sorted({lab for lab in labels if "/" not in lab})
    if loose:
        names = ", ".join(loose[:3]) + (f" and {len(loose) - 3} more" if len(loose) > 3 else "")
        log(f"note: {shown}: {len(loose)} class folder{'s' if len(loose) != 1 else ''} beside the group folders "
            f"({names}): each counts as a group of its own")


def prepare_all(inputs: Sequence, prepare: Callable, chunk: int = 512) -> torch.Tensor:
    """`prepare` over `inputs` in chunks, concatenated (one tensor for the whole set)."""
    parts = [prepare(list(inputs[i:i + chunk])) for i in range(0, len(inputs), chunk)]
    out = torch.cat(parts) if parts else torch.empty(0)
    if not torch.is_tensor(out):
        raise BadInput("episodes need inputs that prepare to one tensor (pass an encoder's `prepare_tensor`)")
    return out


def check_episode_shape(n_way, k_shot, n_query) -> None:
    """Whole numbers of ways, shots and queries; meta-train and episodes check them first, as
    comparing n_way="5" with a count failed in a TypeError before the sampler saw it."""
    for name, value, low in (("n_way", n_way, 2), ("k_shot", k_shot, 1), ("n_query", n_query, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise BadInput(f"{name} must be an integer >= {low}, got {value!r}")


class EpisodeSampler:
    """Seeded N-way K-shot Q-query episodes over `classes` of `data` (all its classes by default).

    `prepare` turns raw inputs into a tensor batch (an encoder's `prepare`); without it, feature
    data is used as float32 rows. Rotations need image tensors (n, C, H, W)."""

    def __init__(
        self, data: Dataset, n_way: int, k_shot: int, n_query: int, seed: int = 0, *, rotations: bool = False,
        classes: Sequence[str] | None = None, prepare: Callable | None = None, augment: bool | str = False,
        mirrors: bool = False, warp: float = ELASTIC["amplitude"],
    ):
        check_episode_shape(n_way, k_shot, n_query)
        data.require_labels(min_classes=1)
        self.n_way, self.k_shot, self.n_query = int(n_way), int(k_shot), int(n_query)
        self.rotations, self.mirrors = bool(rotations), bool(mirrors)
        check_augment(augment)
        if not isinstance(warp, (int, float)) or isinstance(warp, bool) or not 0 < warp <= 0.5:
            raise BadInput(f"warp must be a fraction of the image side in (0, 0.5], got {warp!r}")
        self.augment, self.warp = bool(augment), float(warp) if augment == "elastic" else 0.0
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        wanted = list(classes) if classes is not None else data.classes
        unknown = sorted(set(wanted) - set(data.classes))
        if unknown:
            raise BadInput(f"{data.name or 'data'}: has no class {unknown[0]!r} ({len(unknown)} missing)")
        keep = np.flatnonzero(np.isin(data.labels, wanted))
        sub = data.subset(keep)
        need = self.k_shot + self.n_query
        self.base_classes = sorted(set(sub.labels.tolist()))
        turns = ROTATIONS if self.rotations else (0,)
        flips = (False, True) if self.mirrors else (False,)
        n_classes = len(self.base_classes) * len(turns) * len(flips)
        if n_classes < self.n_way:
            raise BadInput(
                f"{data.name or 'data'}: {n_classes} class{'es' if n_classes != 1 else ''} available but {self.n_way}-way episodes need at least "
                f"{self.n_way}; lower {option('n_way', '--ways')} or use more classes"
            )
        self.members = []
        for c in self.base_classes:
            idx = np.flatnonzero(sub.labels == c)
            if len(idx) < need:
                raise BadInput(
                    f"{data.name or 'data'}: class {c!r} has {len(idx)} examples but {self.k_shot} shots + "
                    f"{self.n_query} queries need {need}; lower {option('k_shot', '--shots')} or {option('n_query', '--queries')}"
                )
            self.members.append(torch.as_tensor(idx))
        if prepare is not None:
            self.x = prepare_all(sub.inputs, prepare)
        elif sub.modality == "features":
            self.x = torch.as_tensor(np.asarray(sub.inputs, dtype=np.float32))
        else:
            raise BadInput(f"{sub.modality} episodes need a `prepare` function (an encoder's)")
        if (self.rotations or self.mirrors or self.augment) and self.x.dim() != 4:
            raise BadInput("rotations, mirrors and augmentation need image inputs (n, C, H, W)")
        # every (class, rotation, mirrored) triple is a class of its own
        self.classes = [(i, r, m) for i in range(len(self.base_classes)) for m in flips for r in turns]

    def class_name(self, c: tuple[int, int, bool]) -> str:
        base, rot, mirrored = c
        suffix = ("m" if mirrored else "") + (str(rot) if rot else "")
        return self.base_classes[base] + (f"@{suffix}" if suffix else "")

    def sample(self) -> Episode:
        g = self.generator
        picked = torch.randperm(len(self.classes), generator=g)[: self.n_way].tolist()
        sx, qx = [], []
        for ci in picked:
            base, rot, mirrored = self.classes[ci]
            members = self.members[base]
            idx = members[torch.randperm(len(members), generator=g)[: self.k_shot + self.n_query]]
            x = turn_images(self.x[idx], rot, mirrored)
            sx.append(x[: self.k_shot])
            qx.append(x[self.k_shot:])
        labels = torch.arange(self.n_way)
        sx, qx = torch.cat(sx), torch.cat(qx)
        if self.augment:
            sx, qx = jitter_images(sx, g, self.warp), jitter_images(qx, g, self.warp)
        return Episode(
            sx, labels.repeat_interleave(self.k_shot), qx, labels.repeat_interleave(self.n_query),
            [self.class_name(self.classes[ci]) for ci in picked],
        )

    def sample_batch(self, n_tasks: int) -> Episode:
        return stack_episodes([self.sample() for _ in range(int(n_tasks))])

    def labelled_batch(self, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """`size` examples drawn uniformly from every class of this sampler (rotated and mirrored
        ones too), labelled by their index in `classes`: plain batches for supervised
        pretraining. `generator` is the caller's, so drawing them leaves the episodes' generator
        (and resumed runs) unchanged."""
        if not hasattr(self, "_pairs"):  # (class index, example index) for every example
            self._pairs = torch.cat([
                torch.stack([torch.full_like(self.members[base], ci), self.members[base]], 1)
                for ci, (base, _, _) in enumerate(self.classes)
            ])
        pick = self._pairs[torch.randint(len(self._pairs), (int(size),), generator=generator)]
        x = self.x[pick[:, 1]]
        picked = [self.classes[ci][1:] for ci in pick[:, 0].tolist()]
        for change in sorted(set(picked) - {(0, False)}):
            turn = torch.tensor([p == change for p in picked])
            x[turn] = turn_images(x[turn], *change)
        if self.augment:
            x = jitter_images(x, generator, self.warp)
        return x, pick[:, 0]

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)
