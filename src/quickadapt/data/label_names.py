"""Class names as extra text examples (`fit --label-names`): intents are often named for what
they mean ("card_declined", "book-flight"), and with one or two examples a class's name is a
second view of it that costs the user nothing. Each class gains one example, its label with
underscores, hyphens, dots and slashes read as spaces and camelCase split ("cardDeclined" ->
"card declined"). Only for text; labels that are codes ("17", "A3") gain nothing from it.

Measured on CLINC150's validation split (150 intents, frozen MiniLM + logistic probe, 3 seeds
of training examples): K=1 65.5 -> 80.8 %, K=5 89.6 -> 90.3 %, K=10 92.2 -> 92.7 %."""
from __future__ import annotations

import re

import numpy as np

from quickadapt.data.dataset import Dataset
from quickadapt.errors import BadInput, option
from quickadapt.progress import log

_SEPARATORS = re.compile(r"[_\-./]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def label_text(label: str) -> str:
    """"card_declined" -> "card declined"; the label itself if nothing readable is left."""
    words = _SEPARATORS.sub(" ", _CAMEL.sub(" ", str(label))).lower().split()
    return " ".join(words) or str(label)


def with_label_names(data: Dataset) -> Dataset:
    """`data` plus one example per class whose text is the class's name (see label_text)."""
    if data.modality != "text":
        raise BadInput(f"{option('label_names')} adds class names as text examples; {data.name or 'the data'} is "
                       f"{data.modality} data")
    classes = data.classes
    if not any(re.search(r"[^\W\d_]", c) for c in classes):  # no letter in any name: codes such as 1, 2, 3
        log(f"note: {option('label_names')}: the class names ({', '.join(classes[:3])}"
            f"{', ...' if len(classes) > 3 else ''}) hold no words, so as text examples they teach nothing")
    groups = None if data.groups is None else np.asarray([*data.groups, *([""] * len(classes))], dtype=object)
    ids = None if data.ids is None else [*data.ids, *(f"label-name:{c}" for c in classes)]
    return Dataset("text", [*data.inputs, *(label_text(c) for c in classes)],
                   np.asarray([*data.labels, *classes], dtype=object), data.name, groups, ids)


__all__ = ["label_text", "with_label_names"]
