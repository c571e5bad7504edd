"""An adapted model in memory: an encoder plus one classifier head per task."""
from __future__ import annotations

import itertools
import math
import numbers
from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from quickadapt.data.dataset import as_inputs, label_text
from quickadapt.encoders.base import Encoder, embed
from quickadapt.errors import BadInput, option

MAIN_TASK = "main"
# inputs embedded and scored at a time: a row's features are embed_dim floats (4.6 KB for minilm's
# three layers), so 100,000 rows held at once took 460 MB, and a million would not fit
PREDICT_CHUNK = 4096
SCORE_DECIMALS = 6  # scores are written rounded to this


def shown_score(score) -> float:
    """A score as predict writes it. Abstaining compares this, so that rows of a written file kept
    by score >= threshold are the rows answered (0.75177568, written 0.751776, was abstained at 0.751776)."""
    return round(float(score), SCORE_DECIMALS)



def is_probability(value) -> bool:
    """A real number in [0, 1] (not a bool, a string or NaN): what a confidence threshold must be."""
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value) and 0 <= value <= 1


def abstain_threshold(calibrated: float | None, given: float | None) -> float:
    """The confidence below which a prediction abstains: `given` (a top probability, so in
    [0, 1]) or else the one calibrated at fit time."""
    if given is not None:
        if not is_probability(given):
            raise BadInput(f"{option('threshold')} is a probability: between 0 and 1, got {given!r}")
        return float(given)
    if calibrated is None:
        raise BadInput(
            "this model has no calibrated abstain threshold (fit calibrates one by cross-validation; not with "
            f"cv 0 or one example per class, and domain-adapt has no target labels to do it); pass {option('threshold')}"
        )
    return calibrated


def check_none_label(none_label: str, classes) -> None:
    """An abstention must not read as a class the model predicts, as files' labels are read
    (`2.0` is class `2`)."""
    if label_text(none_label) in {label_text(c) for c in classes}:
        raise BadInput(f"{option('none_label')} {none_label!r} is one of the model's classes; choose another name")


def class_index(label: str, classes: Sequence[str]) -> int | None:
    """Which of a model's `classes` the label `label` names, as files' labels are read (`1` and
    `1.0` are one class), or None. A model fit on a Python Dataset of the floats 1.0, 2.0 before
    they were read so stored its classes as "1.0", "2.0": test files' 1 and 2 (or 1.0) named no
    class. The exact name wins (image folders `1` and `1.0` are two classes); a label text two
    classes share names neither."""
    return class_indices([label], classes)[0]


def class_indices(labels, classes: Sequence[str]) -> list[int | None]:
    """`class_index` of each of `labels`, the classes read once: a scan of them for each label
    made a 10,000-class model's load and evaluate's reading of its test labels 4.5 s each."""
    exact: dict = {}
    by_text: dict = {}
    for i, c in enumerate(classes):
        exact.setdefault(c, i)
        by_text.setdefault(label_text(c), []).append(i)

    def index(label):
        if label in exact:
            return exact[label]
        same = by_text.get(label_text(label), [])
        return same[0] if len(same) == 1 else None

    return [index(label) for label in labels]


class AdaptedModel(nn.Module):
    """`heads[task]` maps encoder features to logits over `classes[task]`.

    `encoder_tuned` says whether the encoder's weights differ from its pretrained ones: if not,
    features come from the embedding cache and the artifact stores only the heads."""

    def __init__(
        self,
        encoder: Encoder,
        heads: dict[str, nn.Module],
        classes: dict[str, list[str]],
        *,
        encoder_tuned: bool,
        strategy: str,
        strategy_params: dict | None = None,
    ):
        super().__init__()
        if set(heads) != set(classes):
            raise ValueError("heads and classes must name the same tasks")
        self.encoder = encoder
        self.heads = nn.ModuleDict(heads)
        self.classes = {task: list(map(str, names)) for task, names in classes.items()}
        # weights that `create_encoder(name)` cannot rebuild must be stored: tuned here, randomly
        # initialised, or taken from another quickadapt model (built with pretrained=False)
        self.encoder_tuned = bool(encoder_tuned) or not encoder.is_pretrained
        self.strategy = strategy
        self.strategy_params = dict(strategy_params or {})
        self.threshold: float | None = None  # abstain below this confidence (calibrated at fit)
        self.info: dict = {}  # what fit measured: cv accuracy, baseline, timings

    @property
    def kind(self) -> str:
        return "multitask" if len(self.heads) > 1 else "classifier"

    @property
    def device(self) -> torch.device:
        for t in itertools.chain(self.parameters(), self.buffers()):
            return t.device
        return torch.device("cpu")

    def features(self, inputs: Sequence, *, batch_size: int | None = None, progress: str | None = None) -> np.ndarray:
        inputs = as_inputs(inputs, self.encoder.modality)
        return embed(
            self.encoder, inputs, batch_size=batch_size, device=self.device, progress=progress, cache=not self.encoder_tuned
        )

    def predict_proba(self, inputs: Sequence, *, task: str = MAIN_TASK, progress: str | None = None) -> np.ndarray:
        """Class probabilities, one row per input (columns in `self.classes[task]`'s order)."""
        chunks = [proba for _, proba in self.proba_chunks(inputs, task=task, progress=progress)]
        return np.concatenate(chunks) if chunks else np.zeros((0, len(self.classes[task])), dtype=np.float32)

    def proba_chunks(self, inputs: Sequence, *, task: str = MAIN_TASK, progress: str | None = None):
        """(first row, probabilities) for PREDICT_CHUNK inputs at a time, under one progress bar,
        so what prediction holds at once does not grow with the number of inputs."""
        from quickadapt.progress import progress_bar

        self.check_task(task)
        inputs = as_inputs(inputs, self.encoder.modality)
        with progress_bar(progress, total=len(inputs)) as advance:
            for start in range(0, len(inputs), PREDICT_CHUNK):
                yield start, self.chunk_proba(inputs[start : start + PREDICT_CHUNK], task=task, advance=advance)

    @torch.no_grad()
    def chunk_proba(self, inputs: Sequence, *, task: str, advance=None) -> np.ndarray:
        """Probabilities of a few inputs; `advance` moves the caller's progress bar by the rows done."""
        return self.proba_of_features(self.features(inputs, progress=advance), task=task)

    @torch.no_grad()
    def proba_of_features(self, features: np.ndarray, *, task: str = MAIN_TASK) -> np.ndarray:
        """Class probabilities from features `features` already computes (what the head alone gives)."""
        head = self.heads[task]
        head.eval()
        return torch.softmax(head(torch.as_tensor(features, device=self.device)).float(), dim=-1).cpu().numpy()

    def predict(
        self, inputs: Sequence, *, task: str = MAIN_TASK, abstain: bool = False, none_label: str = "__none__",
        threshold: float | None = None, progress: str | None = None,
    ) -> tuple[list[str], np.ndarray]:
        """Predicted labels and their scores. With `abstain`, inputs whose top score is below the
        threshold (given, else the calibrated one) get `none_label`."""
        ranked = self.predict_top(inputs, 1, task=task, abstain=abstain, none_label=none_label, threshold=threshold,
                                  progress=progress)
        return ranked.labels, ranked.scores

    def predict_top(
        self, inputs: Sequence, k: int, *, task: str = MAIN_TASK, abstain: bool = False, none_label: str = "__none__",
        threshold: float | None = None, progress: str | None = None,
    ) -> "TopPredictions":
        """`predict`'s labels and scores, and each input's `k` most probable classes with their
        probabilities, the most probable first (all the classes where the model has fewer than
        `k`). The first is `predict`'s label unless it abstained: an abstention still ranks the
        classes, the ones a "did you mean" would offer."""
        self.check_task(task)
        k = top_count(k, len(self.classes[task]))
        if abstain:  # checked before the inputs are embedded
            if task != MAIN_TASK and threshold is None:  # calibrated on the main head's held-out scores only
                raise BadInput(f"the calibrated abstain threshold is for task {MAIN_TASK}; pass {option('threshold')} "
                               f"for task {task!r}")
            t = abstain_threshold(self.threshold, threshold)
            check_none_label(none_label, self.classes[task])
        inputs = as_inputs(inputs, self.encoder.modality)
        names = np.asarray(self.classes[task], dtype=object)
        top_labels = np.empty((len(inputs), k), dtype=object)
        top_scores = np.zeros((len(inputs), k))
        for start, proba in self.proba_chunks(inputs, task=task, progress=progress):
            bad = np.flatnonzero(~np.isfinite(proba).all(1))
            if len(bad):  # NaN would read as the first class with a score that never abstains
                raise BadInput(f"the model's scores for input {start + bad[0] + 1} are not finite numbers "
                               "(NaN or inf): its values lie far outside what the model was fit on, or its weights diverged")
            columns = top_columns(proba, k)
            top_labels[start : start + len(proba)] = names[columns]
            top_scores[start : start + len(proba)] = np.take_along_axis(proba, columns, axis=1)
        labels, scores = top_labels[:, 0].tolist(), top_scores[:, 0].copy()
        if abstain:
            if threshold is None:
                note_uncalibrated([lab for lab, s in zip(labels, scores) if shown_score(s) < t],
                                  self.info.get("uncalibrated_classes") or [])
            labels = [none_label if shown_score(s) < t else lab for lab, s in zip(labels, scores)]
        return TopPredictions(labels, scores, top_labels, top_scores)

    def as_classes(self, labels, task: str = MAIN_TASK) -> np.ndarray:
        """`labels` written as this model's class names (`class_index`); a label naming none of
        them is kept as it is."""
        names = self.classes[task]
        distinct = set(labels)  # a test file repeats few labels
        index = dict(zip(distinct, class_indices(distinct, names)))
        return np.asarray([label if index[label] is None else names[index[label]] for label in labels], dtype=object)

    def check_task(self, task: str) -> None:
        """A task this model has a head for: one line, not a KeyError (CLI and API alike)."""
        if task not in self.heads:
            raise BadInput(f"{option('task')} {task!r}: this model has tasks {', '.join(self.heads)}")

    def forward(self, batch, task: str = MAIN_TASK) -> torch.Tensor:
        return self.heads[task](self.encoder(batch))


class TopPredictions(NamedTuple):
    """`AdaptedModel.predict_top`'s answer: `labels` and `scores` as `predict` gives them, and
    `top_labels`, `top_scores` (one row per input, k columns), the classes by probability."""
    labels: list[str]
    scores: np.ndarray
    top_labels: np.ndarray
    top_scores: np.ndarray


def top_count(k, n_classes: int) -> int:
    """How many classes to rank: `k`, a whole number from 1, or all `n_classes` where there are
    fewer (a top 5 of a 3-class model lists the 3, as a "did you mean" offers what there is)."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise BadInput(f"{option('top', python='k')} is how many classes to list: a whole number from 1, got {k!r}")
    return min(int(k), n_classes)


def top_columns(proba: np.ndarray, k: int) -> np.ndarray:
    """The columns of each row's `k` highest probabilities, highest first; of equal ones the first
    column first, as argmax picks it, so the first is always the predicted class."""
    if k == 1:  # every predict without --top: argmax, not a sort of every row (0.18 s a chunk at 1,000 classes)
        return proba.argmax(1)[:, None]
    if k >= proba.shape[1]:
        return np.argsort(-proba, axis=1, kind="stable")
    # a few of many classes (a catalogue's 10,000): pick each row's k highest in linear time and sort
    # those alone, not the whole row (predict --top 3 of 10,000 rows x 10,000 classes took 21.7 s
    # against 4.1 s without --top). Where the k-th value is tied with a column left out, which of
    # them is kept is the partition's choice, so those rows are sorted whole, as before
    picked = np.argpartition(-proba, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(proba, picked, axis=1)
    columns = np.take_along_axis(picked, np.lexsort((picked, -values), axis=1), axis=1)
    unsure = ~np.isfinite(proba).all(1) | ((proba >= values.min(1, keepdims=True)).sum(1) != k)
    if unsure.any():
        columns[unsure] = np.argsort(-proba[unsure], axis=1, kind="stable")[:, :k]
    return columns


def note_uncalibrated(withheld: list[str], uncalibrated: list[str]) -> None:
    """Say how many withheld answers (`withheld`: the class each would have been) were for the
    classes the calibrated threshold never saw, those with one example (adapt's cv_note): their
    answers are less confident (ten CLINC150 intents of one example beside ten of eight had 240
    of their 300 test answers withheld, three of them 29 of 30; the others 21 of 300)."""
    from quickadapt.progress import log

    unseen = set(uncalibrated)
    mine = [lab for lab in withheld if lab in unseen]
    if mine:
        n = len(uncalibrated)
        names = ", ".join(sorted(set(mine))[:3]) + (", ..." if len(set(mine)) > 3 else "")
        log(f"note: {len(mine)} of the {len(withheld)} answers withheld would have been one of the {n} "
            f"class{'es' if n > 1 else ''} with one training example ({names}), which the abstain threshold was "
            f"calibrated without; give {'them' if n > 1 else 'it'} more examples, or pass {option('threshold')}")


class BlendedModel(AdaptedModel):
    """Several adapted models over the same classes, their predictions mixed as a weighted
    geometric mean of probabilities (a weighted sum of log-probabilities, renormalised): a class
    that one part rules out stays unlikely, which an arithmetic mean would blur.

    It answers as the first part does in everything but its probabilities (encoder, heads, kind),
    so the CLI and the Python API need not tell it apart; the artifact stores each part as an
    ordinary model folder (docs/artifact.md)."""

    def __init__(self, parts: Sequence[AdaptedModel], weights: Sequence[float], *, strategy: str,
                 strategy_params: dict | None = None):
        first = parts[0]
        if any(p.classes != first.classes for p in parts) or set(first.heads) != {MAIN_TASK}:
            raise ValueError("blended parts must be single-task models over the same classes")
        if len(weights) != len(parts):
            raise ValueError("one weight per part")
        if not all(math.isfinite(w) and w >= 0 for w in weights) or not any(w > 0 for w in weights):
            raise ValueError(f"blend weights must be numbers >= 0, one above 0, got {list(weights)}")
        super().__init__(first.encoder, dict(first.heads), first.classes, encoder_tuned=first.encoder_tuned,
                         strategy=strategy, strategy_params=strategy_params)
        self.parts = nn.ModuleList(parts)
        self.weights = [float(w) for w in weights]

    @torch.no_grad()
    def chunk_proba(self, inputs: Sequence, *, task: str, advance=None) -> np.ndarray:
        used = [(p, w) for p, w in zip(self.parts, self.weights) if w > 0]
        # the bar counts the first part's rows: the others follow it chunk by chunk
        logs = [np.log(np.clip(p.chunk_proba(inputs, task=task, advance=advance if i == 0 else None), 1e-12, None))
                for i, (p, _) in enumerate(used)]
        return np.exp(mix_log_proba(logs, [w for _, w in used])).astype(np.float32)


def mix_log_proba(log_probas: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Log-probabilities of the parts' weighted geometric mean, renormalised over classes (axis 1)."""
    mixed = sum(w * lp for lp, w in zip(log_probas, weights))
    return mixed - np.logaddexp.reduce(mixed, axis=1, keepdims=True)
