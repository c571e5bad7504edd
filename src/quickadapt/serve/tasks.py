"""The service's tasks: each a name, its examples and the classifier adapted to them.

Adapting (`FewShotClassifier.fit`) seeds the process's global random generators, so fits run one
at a time, under one lock; predictions run side by side, which the library allows on a fitted
classifier (docs/python.md, "Threads"), and a re-adapted task's classifier is swapped in whole,
so a prediction sees the old one or the new one, never half of each."""
from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from quickadapt import FewShotClassifier
from quickadapt.adapt import DEFAULT_ENCODER
from quickadapt.data.dataset import label_text
from quickadapt.encoders import ENCODERS, encoder_modality
from quickadapt.encoders.base import encoder_fingerprint
from quickadapt.errors import first_line
from quickadapt.model import abstain_threshold, check_none_label, shown_score
from quickadapt.progress import log
from quickadapt.serve.errors import ApiError
from quickadapt.serve.inputs import json_type, library_inputs
from quickadapt.serve.limits import Limits
from quickadapt.transfer import STRATEGIES

SERVED_MODALITIES = ("text", "image")  # what a task's examples may be: `text` or base64 `image`
DEFAULT_STRATEGY = "probe"  # a logistic head on frozen embeddings: adapts in well under a second once cached
# the classes a prediction's `scores` lists unless the request's max_scores says otherwise: every
# class of a task of up to this many (CLINC150's 150 intents whole), the likeliest this many of a
# larger one. Every class of a 10,000-class catalogue made a 1,000-input answer 161 MB (69 s, 2 GB
# of the service's memory). The classes left out can hold much of the probability (docs/serve.md)
MAX_SCORES = 200


@dataclass
class Task:
    task_id: str
    name: str
    encoder: str
    strategy: str
    classifier: FewShotClassifier
    examples: list[dict] | None  # as posted ({"text"|"image", "label"}); None: served from a model folder
    adapt_ms: float | None
    created: str
    model_folder: str | None = None
    cv: int = 0

    @property
    def read_only(self) -> bool:
        return self.examples is None

    @property
    def model_name(self) -> str | None:
        """The served folder as clients see it: its name, not where it is on the server."""
        return Path(self.model_folder).name if self.model_folder is not None else None

    @property
    def modality(self) -> str:
        return self.classifier.model_.encoder.modality

    def describe(self) -> dict:
        clf = self.classifier
        info = clf.model_.info
        out = {"task_id": self.task_id, "name": self.name, "encoder": self.encoder, "strategy": self.strategy,
               # a domain-adapted folder's labelled examples are its source's (n_source_fit), beside its unlabelled target's
               "modality": self.modality, "n_examples": info.get("n_examples", info.get("n_source_fit")),
               "n_classes": len(clf.classes_), "labels": [json_label(c) for c in clf.classes_],
               "read_only": self.read_only, "created": self.created, "adapt_ms": self.adapt_ms}
        if self.model_folder is not None:
            out["model"] = self.model_name
        if info.get("n_target") is not None:
            out["n_target"] = info["n_target"]
        if info.get("cv_accuracy") is not None:
            out["cv_accuracy"] = info["cv_accuracy"]
        if clf.model_.threshold is not None:  # what abstain uses unless a request gives its own
            out["threshold"] = clf.model_.threshold
        if info.get("cv_note"):
            out["cv_note"] = info["cv_note"]
        return out


def json_label(value):
    """A class as the client sent it (a numpy scalar of classes_ as a plain JSON value)."""
    return value.item() if hasattr(value, "item") else value


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_task_id() -> str:
    return "t_" + secrets.token_hex(8)


def served_encoders() -> list[str]:
    """Encoder names a client may ask for: registered ones that read text or images (a local
    folder is never taken from a request: the client would name paths on the server)."""
    return [n for n in ENCODERS.names() if encoder_modality(n) in SERVED_MODALITIES]


def frozen_strategies() -> list[str]:
    """Strategies that keep the encoder frozen and train on the task alone: they adapt in a
    request's time (fine-tuning takes minutes: `quickadapt fit`, then `serve --model`)."""
    return [n for n in STRATEGIES.names() if not STRATEGIES.get(n).tunes_encoder and not STRATEGIES.get(n).needs_source]


class TaskStore:
    """The tasks by id, their fits under one lock, and (with `state`) each written to disk as it
    changes (state.py). Encoders that no fit changed are shared between tasks, one instance per
    encoder and settings: minilm is 90 MB a copy."""

    def __init__(self, limits: Limits | None = None, state=None, *, seed: int = 0, device: str = "auto"):
        self.limits = limits or Limits()
        self.state = state
        self.seed = seed
        self.device = device
        self.tasks: dict[str, Task] = {}
        self.fit_lock = threading.Lock()  # fits, one at a time (the global random generators)
        self.table_lock = threading.Lock()  # the task table
        self.encoders: dict[tuple, object] = {}

    # -- the table --------------------------------------------------------------------------------

    def get(self, task_id: str) -> Task:
        with self.table_lock:
            task = self.tasks.get(task_id)
        if task is None:
            raise ApiError(404, f"no task {task_id!r}; GET /v1/tasks lists them")
        return task

    def all(self) -> list[Task]:
        with self.table_lock:
            return list(self.tasks.values())

    def put(self, task: Task) -> None:
        self.share_encoder(task.classifier)
        with self.table_lock:
            self.tasks[task.task_id] = task

    def delete(self, task_id: str) -> Task:
        task = self.get(task_id)
        if task.read_only:
            raise ApiError(409, f"task {task_id!r} is served from the model folder {task.model_name}; it cannot be "
                                "deleted over HTTP (restart the service without its --model)")
        with self.fit_lock:  # not while an /examples call re-adapts it
            with self.table_lock:
                self.tasks.pop(task_id, None)
            if self.state is not None:
                self.state.remove(task_id)
        log(f"task {task_id} ({task.name!r}) deleted")
        return task

    def share_encoder(self, clf: FewShotClassifier) -> None:
        """Point the model at the one instance of its encoder (the same weights and
        preprocessing, on the same device) that earlier tasks use, dropping its own copy."""
        model = clf.model_
        if model.encoder_tuned:  # its own weights: nothing to share
            return
        key = (encoder_fingerprint(model.encoder), str(model.device))
        with self.table_lock:
            model.encoder = self.encoders.setdefault(key, model.encoder)

    # -- adapting ---------------------------------------------------------------------------------

    def create(self, name: str, examples: list[dict], encoder: str | None, strategy: str | None,
               cv: int) -> Task:
        modality = examples_modality(examples)
        encoder = encoder or DEFAULT_ENCODER[modality]
        if encoder not in served_encoders():
            raise ApiError(400, f"unknown encoder {encoder!r}; the service adapts with {', '.join(served_encoders())}")
        if encoder_modality(encoder) != modality:
            raise ApiError(400, f"encoder {encoder!r} reads {encoder_modality(encoder)}, but the examples are "
                                f"{'images' if modality == 'image' else 'text'}")
        strategy = strategy or DEFAULT_STRATEGY
        if strategy not in frozen_strategies():
            raise ApiError(400, f"strategy {strategy!r}: the service adapts with {', '.join(frozen_strategies())} "
                                "(those that keep the encoder frozen); fit others with `quickadapt fit` and serve "
                                "the folder with `quickadapt serve --model`")
        self.check_count(len(examples))
        with self.fit_lock:  # every task is made under it: two creations cannot both take the last place
            self.check_room()
            clf, adapt_ms = self.fit(examples, modality, encoder, strategy, cv)
            task = Task(new_task_id(), name, encoder, strategy, clf, list(examples), adapt_ms, now(), cv=cv)
            self.save(task)
            self.put(task)
        log(f"task {task.task_id} ({name!r}) adapted: {len(examples)} examples, {len(clf.classes_)} classes, "
            f"{adapt_ms:.0f} ms")
        return task

    def add_examples(self, task_id: str, examples: list[dict]) -> Task:
        task = self.get(task_id)
        if task.read_only:
            raise ApiError(409, f"task {task_id!r} is served from the model folder {task.model_name} and cannot "
                                "learn more examples; create a task with POST /v1/tasks instead")
        with self.fit_lock:  # two /examples calls at once: each re-adapts on what the other added
            task = self.get(task_id)  # deleted meanwhile: 404
            both = task.examples + list(examples)
            self.check_count(len(both))
            modality = examples_modality(examples, task.modality, type(task.examples[0]["label"]))
            # messages name the posted examples: the task's own come first, and were read before
            clf, adapt_ms = self.fit(both, modality, task.encoder, task.strategy, task.cv, known=len(task.examples))
            task = Task(task.task_id, task.name, task.encoder, task.strategy, clf, both, adapt_ms, task.created,
                        cv=task.cv)
            self.save(task)
            self.put(task)
        log(f"task {task_id} ({task.name!r}) re-adapted: {len(both)} examples, {len(clf.classes_)} classes, "
            f"{adapt_ms:.0f} ms")
        return task

    def check_count(self, n: int) -> None:
        if n > self.limits.max_examples:
            raise ApiError(413, f"a task holds at most {self.limits.max_examples} examples (--max-examples), "
                                f"this one would hold {n}")

    def check_room(self) -> None:
        """Refuse a new task past --max-tasks: each holds its examples and head in memory for as long as
        the service runs. Refused, not evicted: a client's task never disappears under it. Served
        folders do not count (the command line chose them)."""
        held = sum(not t.read_only for t in self.all())
        if held >= self.limits.max_tasks:
            raise ApiError(413, f"the service holds at most {self.limits.max_tasks} tasks (--max-tasks) and holds "
                                f"{held}; DELETE /v1/tasks/ID one no longer needed, then create this one")

    def fit(self, examples: list[dict], modality: str, encoder: str, strategy: str, cv: int, known: int = 0):
        key = "text" if modality == "text" else "image"
        clf = FewShotClassifier(encoder=encoder, strategy=strategy, cv=cv, seed=self.seed, device=self.device)
        started = time.perf_counter()
        with library_inputs([e[key] for e in examples], modality, "examples", known=known) as inputs:
            clf.fit(inputs, [e["label"] for e in examples])
        return clf, round((time.perf_counter() - started) * 1000, 1)

    def save(self, task: Task) -> None:
        """Keep `task` in --state before it answers: a write that fails (a full disk) leaves the task
        as it was, in memory and on disk, and says why."""
        if self.state is None:
            return
        try:
            self.state.write(task)
        except OSError as exc:
            log(f"error: task {task.task_id} could not be written to --state {self.state.folder}: {exc}")
            raise ApiError(500, f"the task could not be kept in --state ({exc.strerror or exc}), so it was not "
                                "changed; the service's log has the details") from None

    # -- predicting -------------------------------------------------------------------------------

    def predict(self, task_id: str, inputs: list, *, top_k: int | None = None, abstain: bool = False,
                threshold: float | None = None, none_label="__none__", max_scores: int | None = None) -> list[dict]:
        if len(inputs) > self.limits.max_inputs:
            raise ApiError(413, f"at most {self.limits.max_inputs} inputs a call (--max-inputs), got {len(inputs)}; "
                                "send them in several calls")
        clf = self.get(task_id).classifier  # the task as it is now: a re-adapt meanwhile swaps in a new one
        n_classes = len(clf.classes_)
        if abstain or threshold is not None:  # checked before the inputs are embedded, as the library does
            try:
                t = abstain_threshold(clf.model_.threshold, threshold)
                check_none_label(none_label, clf.classes_)
            except ValueError as exc:
                raise ApiError(400, first_line(exc)) from None
        else:
            t = None
        n_scores = min(max_scores or MAX_SCORES, n_classes)
        with library_inputs(inputs, clf.model_.encoder.modality, "inputs") as X:
            labels, probs = clf.predict_top(X, max(n_scores, top_k or 1)) if len(inputs) else ([], [])
        out = []
        for row_labels, row_probs in zip(labels, probs):
            label, score = json_label(row_labels[0]), shown_score(row_probs[0])
            row = {"label": none_label if t is not None and score < t else label, "score": score,
                   "scores": {label_text(c): shown_score(p) for c, p in zip(row_labels[:n_scores], row_probs[:n_scores])}}
            if top_k is not None:
                row["top"] = [{"label": json_label(c), "score": shown_score(p)}
                              for c, p in zip(row_labels[:top_k], row_probs[:top_k])]
            out.append(row)
        return out


def check_label(label, i: int, kind: type | None) -> type:
    """A class name the client can read back as sent: text or a whole number, all of one kind (the
    library reads [1, "1"] as one class, and a mix of 1 and "y" as the texts "1" and "y")."""
    if isinstance(label, bool) or not isinstance(label, (str, int)) or label == "":
        raise ApiError(400, f"examples[{i}].label must be a class name: text or a whole number, got "
                            f"{json_type(label) if label != '' else 'empty text'}")
    if kind is not None and type(label) is not kind:
        raise ApiError(400, f"examples[{i}].label is {json_type(label)} but the task's labels are "
                            f"{'text' if kind is str else 'whole numbers'}; make them all text or all whole numbers")
    return type(label)


def examples_modality(examples: list[dict], expected: str | None = None, label_kind: type | None = None) -> str:
    """What the examples are (text or image), each one of them alike, with labels of one kind;
    400 naming the first odd one. `expected`, `label_kind`: a task's own examples'."""
    if not examples:
        raise ApiError(400, "examples is empty; send labelled examples, at least two classes")
    for i, e in enumerate(examples):
        label_kind = check_label(e.get("label"), i, label_kind)
        given = [k for k in SERVED_MODALITIES if e.get(k) is not None]
        if len(given) != 1:
            raise ApiError(400, f"examples[{i}] needs one of text or image (base64), "
                                f"got {' and '.join(given) if given else 'neither'}")
        kind = given[0]
        if expected is None:
            expected = kind
        elif kind != expected:
            raise ApiError(400, f"examples[{i}] is {'an image' if kind == 'image' else 'text'} but the task's "
                                f"examples are {'images' if expected == 'image' else 'text'}")
    return expected
