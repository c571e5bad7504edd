"""The one in-memory form of a dataset: inputs of one modality plus optional string labels."""
from __future__ import annotations

import hashlib
import numbers
import re
import sys
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from quickadapt.errors import BadInput, MissingLabel

MODALITIES = ("text", "image", "features")


def label_text(value) -> str:
    """A label as quickadapt keeps it, the same from every source (csv, jsonl, FewShotClassifier's
    y, the numbers of a Dataset built in Python): 3, 3.0 and "3.0" all become "3" (pandas writes
    an integer label column that had a NaN as floats, and JSON numbers must agree with csv text);
    surrounding spaces go."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text.split(".")[0] if re.fullmatch(r"-?\d+\.0+", text) else text


def missing_value(value) -> bool:
    """A table's empty cell as Python meets it: None, NaN (a float column's), or pandas' NA and
    NaT (a nullable or date column's), each the one value not equal to itself. NA's == answers NA,
    whose truth is ambiguous (TypeError): sorting labels failed on it, and str() made it a class."""
    if value is None:
        return True
    try:
        return not (value == value)
    except TypeError:
        return True
    except ValueError:  # an array (== compares item by item): not an empty cell, whatever else it is
        return False


def zeros_dropped(label: str) -> str:
    """A number-like label as a spreadsheet keeps it once it reads it as a number: leading zeros
    gone (`007` is 7, `-01` is -1), whatever else it is unchanged."""
    return re.sub(r"^(-?)0+(?=\d)", r"\1", label) if re.fullmatch(r"-?\d+(\.\d+)?", label) else label


def label_shown(label: str) -> str:
    """A label as a message names it: as it is, or repr-quoted where it holds a newline, a tab or
    another unprintable character, which would cut the one-line message or hide in it."""
    return label if label.isprintable() else repr(label)


@dataclass
class Dataset:
    """`inputs` is a list of str (text), a list of image paths or uint8 arrays (image), or a 2-D
    float array (features). `labels` is an array of str, or None for unlabelled data. `groups`
    (optional, same length) names a super-class per example: an alphabet, an intent domain."""

    modality: str
    inputs: Sequence
    labels: np.ndarray | None = None
    name: str = ""
    groups: np.ndarray | None = None
    ids: list[str] | None = field(default=None, repr=False)  # what `predict` prints as `input`
    columns: list[str] | None = field(default=None, repr=False)  # a feature csv's column names
    id_column: str | None = field(default=None, repr=False)  # the feature csv's column `ids` come from

    def __post_init__(self):
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {self.modality!r}")
        self.inputs = as_inputs(self.inputs, self.modality, self.name or "inputs")
        if self.labels is not None:
            given = list(self.labels)
            missing = next((i for i, v in enumerate(given) if missing_value(v)), None)
            if missing is not None:  # str() made them classes named "None" and "nan", as a file's empty cell is not
                raise MissingLabel(f"{self.name or 'data'}: data row {missing + 1} has no label ({given[missing]!r}); "
                                   "give every example a label, or leave the unlabelled ones out")
            # numbers as the file loaders read them: 1.0 made class "1.0" here but "1" from a csv,
            # so a test file of the same labels was refused as holding classes the data lacks.
            # Text stays as given: image folder names are class names as written ("1" and "1.0" two)
            self.labels = np.asarray([label_text(v) if isinstance(v, numbers.Number) else str(v) for v in given],
                                     dtype=object)
            if len(self.labels) != len(self.inputs):
                raise ValueError("inputs and labels differ in length")
            half = first_half_character(self.labels)
            if half is not None:  # a model folder is written in UTF-8: hashing it for the manifest failed
                raise BadInput(f"{self.name or 'data'}: data row {half + 1} has a label holding "
                               f"{half_character_problem(self.labels[half])}")

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def classes(self) -> list[str]:
        if self.labels is None:
            return []
        return sorted(set(self.labels.tolist()))

    def input_ids(self) -> list[str]:
        """How each input is named in prediction files: its own name (`named_inputs`) or the row index."""
        named = self.named_inputs()
        return named if named is not None else [str(i) for i in range(len(self))]

    def named_inputs(self) -> list[str] | None:
        """The inputs' own names: the text, the image path, a feature csv's id column (while it is
        not read as a feature: a model fit on it reads it as one); None where only their position
        names them (feature vectors, images given as arrays)."""
        if self.ids is not None and self.id_column not in (self.columns or ()):
            return self.ids
        if self.modality == "text":
            return list(self.inputs)
        if self.modality == "image" and all(isinstance(x, str) for x in self.inputs):
            return list(self.inputs)
        return None

    def subset(self, index) -> "Dataset":
        index = np.asarray(index, dtype=int)
        if self.modality == "features":
            inputs = np.asarray(self.inputs)[index]
        else:
            inputs = [self.inputs[i] for i in index]
        return replace(
            self,
            inputs=inputs,
            labels=None if self.labels is None else self.labels[index],
            groups=None if self.groups is None else np.asarray(self.groups)[index],
            ids=None if self.ids is None else [self.ids[i] for i in index],
        )

    def without_labels(self) -> "Dataset":
        return replace(self, labels=None)

    def require_labels(self, min_classes: int = 2) -> None:
        """Fail clearly when this dataset cannot train a classifier."""
        if self.labels is None:
            raise BadInput(f"{self.name or 'data'}: no labels found (need a `label` column or class folders)")
        if len(self) == 0:
            raise BadInput(f"{self.name or 'data'}: no examples")
        n = len(self.classes)
        if n < min_classes:
            raise BadInput(
                f"{self.name or 'data'}: found {n} class ({', '.join(label_shown(c) for c in self.classes)}); a classifier needs at least {min_classes}"
            )

    def fingerprint(self) -> str:
        """sha256 over inputs and labels: which data a model was adapted on."""
        h = hashlib.sha256(self.modality.encode())
        if self.modality == "features":
            # the values as read (float64), as the mlp reads them: at float32 two files whose
            # values float32 rounds alike shared one, though they fit other models (event times
            # in nanoseconds, 1.7e18, lie 137 s apart in float32: 87.5 % against 56 % estimated)
            h.update(content_bytes(np.asarray(self.inputs), "features"))
        else:
            for x in self.inputs:
                h.update(content_bytes(x, self.modality))
                h.update(b"\0")
        if self.labels is not None:
            h.update("\0".join(self.labels.tolist()).encode())
        return h.hexdigest()

    def fingerprint_any_order(self) -> str:
        """sha256 over the examples (input and label) in sorted order: the same for a file whose
        rows were shuffled, which `fingerprint` tells apart (evaluate took a model's own training
        file, shuffled, for new test data: 100.0 % on its 50 examples, no warning)."""
        labels = self.labels.tolist() if self.labels is not None else [None] * len(self)
        rows = sorted(hashlib.sha256(content_bytes(x, self.modality) + b"\0" + str(y).encode()).digest()
                      for x, y in zip(self.inputs, labels))
        return hashlib.sha256(self.modality.encode() + b"".join(rows)).hexdigest()


def as_inputs(inputs, modality: str, name: str = "inputs"):
    """Inputs as they are read, by position: a pandas Series' [i] is by its index label, so a
    shuffled split's rows met other rows' labels (Dataset.subset) or features (embed). Feature
    rows as a 2-D array (a DataFrame's values), other inputs as a list (`input_list`)."""
    if modality != "features":
        return input_list(inputs, name)
    rows = np.asarray(inputs)
    if rows.ndim != 2 and rows.size:
        got = f"shape {rows.shape}" if rows.ndim else type(inputs).__name__
        raise BadInput(f"{name}: feature vectors must be a 2-D array, one row per example; got {got}")
    return rows


def input_list(inputs, name: str) -> list:
    """Text or image inputs as a list read by position. A DataFrame and a dict iterate over their
    column names or keys, not their rows, so each would be read as a few inputs named like
    columns: a one-column table (or 2-D array of text) gives its column, any other table or a
    dict is refused."""
    if inputs is None or isinstance(inputs, (str, bytes)) or not hasattr(inputs, "__iter__"):
        raise BadInput(f"{name} must be a list of inputs, got {type(inputs).__name__}")
    if isinstance(inputs, Mapping):
        raise BadInput(f"{name} is a dict; pass a list of inputs (list(d.values()) if its values are the inputs)")
    if hasattr(inputs, "columns") and hasattr(inputs, "iloc"):  # a pandas DataFrame
        if len(inputs.columns) != 1:
            raise BadInput(f"{name} is a table with columns {', '.join(map(str, inputs.columns))}; "
                           f"pass the column that holds the inputs, e.g. {name}[{str(inputs.columns[0])!r}]")
        inputs = inputs.iloc[:, 0]
    if isinstance(inputs, np.ndarray) and inputs.ndim == 2 and inputs.dtype.kind in "OUS":
        # a table's values, as scikit-learn passes them on (a ColumnTransformer's output is
        # always 2-D): its rows are one-cell arrays, not texts or paths
        if inputs.shape[1] != 1:
            raise BadInput(f"{name} is a 2-D array of {inputs.shape[1]} columns; pass the column that holds the "
                           f"inputs, e.g. {name}[:, 0]")
        inputs = inputs[:, 0]
    return inputs if isinstance(inputs, list) else list(inputs)


def content_key(x, modality: str) -> bytes:
    """sha256 of one input's content: the same text, image or feature row gives the same key."""
    return hashlib.sha256(content_bytes(x, modality)).digest()


def content_bytes(x, modality: str) -> bytes:
    """The bytes that identify one text or image input (for fingerprints and caches).
    Image paths are identified by their file's content, not their name."""
    if modality == "text":
        return x.encode("utf-8", "surrogatepass")
    if isinstance(x, str):
        with open(x, "rb") as f:
            return hashlib.sha256(f.read()).digest()
    pil = sys.modules.get("PIL.Image")  # a PIL image, if PIL is in use (texts do not import it)
    if pil is not None and isinstance(x, pil.Image):
        from quickadapt.data.images import picture_bytes

        return picture_bytes(x)
    # feature rows as float64, whatever they were stored as: exact, since embedding serves an
    # input given twice from one computation (two timestamps a second apart are two inputs)
    arr = np.ascontiguousarray(np.asarray(x, dtype=np.float64) if modality == "features" else x)
    return hashlib.sha256(str(arr.shape).encode() + str(arr.dtype).encode() + arr.tobytes()).digest()


def example_key(x, modality: str) -> bytes:
    """Whether two inputs are the same example, for cross-validation (copies held out together,
    --source rows that are --data rows): `content_key`, except that feature rows compare at
    float32, so the same numbers written to one file as float32 and to another as float64 match
    (0.1234 read back from float32 is 0.12340000271797180; a source copy missed trained each
    fold on what it held out: 100 % on random labels), and texts compare in `text_normal_form`."""
    if modality == "features":
        x = np.asarray(x, dtype=np.float32)
    if modality == "text":
        x = text_normal_form(x)
    return content_key(x, modality)


def half_character(text: str) -> str | None:
    """A lone UTF-16 surrogate in `text`, or None: half of a character UTF-16 writes as two (an
    emoji), left where a text was cut at a UTF-16 length (JavaScript's and Java's). JSON's
    "\\ud83d" reads as one; no tokenizer takes it (a TypeError from deep in transformers) and no
    UTF-8 output can hold it. A whole pair ("\\ud83d\\ude00") reads as the one character it is."""
    found = re.search("[\ud800-\udfff]", text)
    return found.group() if found else None


def first_half_character(values) -> int | None:
    """The position of the first string among `values` holding half a character, or None."""
    return next((i for i, v in enumerate(values) if isinstance(v, str) and half_character(v)), None)


def half_character_problem(text: str) -> str | None:
    """What every refusal says of a text or label holding half a character (`half_character`),
    after naming where it is (a file's line, a data row, X[i] or y[i]); None for a whole text."""
    half = half_character(text)
    if half is None:
        return None
    return f"half a character ({ascii(half)}, a lone UTF-16 surrogate, as a text cut inside an emoji keeps); remove it"


def unseen(char: str) -> bool:
    """Whether MiniLM's tokenizer drops `char` before reading: format characters (zero-width
    space and joiners, a BOM, a soft hyphen) and control characters other than white space
    (which separates words, so `split` reads it)."""
    category = unicodedata.category(char)
    return category == "Cf" or category == "Cc" and not char.isspace()


def blank(text: str) -> bool:
    """Whether `text` holds nothing to read: white space and `unseen` characters only. A cell of
    zero-width spaces, a BOM or control characters (pasted from a web form) tokenizes as an empty
    text does, [CLS] [SEP], and was answered with a class as if it said something."""
    return all(c.isspace() or unseen(c) for c in text)


def text_normal_form(text: str) -> str:
    """A text as cross-validation compares it: Unicode-normalised (NFKC), invisible characters
    dropped, runs of white space as one space, none around it, capitals folded. MiniLM
    lowercases and strips, so "What is my balance " and "WHAT IS MY BALANCE" embed exactly as
    "what is my balance" does; keyed on their bytes, such twins were held out apart and each
    fold scored texts it had trained on (12 random-label classes with an upper-case twin of every
    row: 65 % estimated, chance 8 %; 30 CLINC texts under 6 random labels, each beside a twin with
    a zero-width space or a BOM: 80 %, chance 17 %).
    For an encoder that does see case, grouping more only holds out more together, which can
    make the estimate more conservative but never scores a fold on what it trained on. The
    embedding cache keeps exact inputs (`content_key`): this form decides only what is held out."""
    text = unicodedata.normalize("NFKC", text)
    if not text.isprintable():  # only then can it hold a format or control character: read each
        text = "".join(c for c in text if not unseen(c))  # (a table over all of Unicode took 0.1 s a process)
    return " ".join(text.split()).casefold()
