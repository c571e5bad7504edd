"""Feature columns by name: a csv of feature vectors names its columns, and a model trained on
one must read the same columns in the same order, or every prediction is silently wrong."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from quickadapt.data.dataset import Dataset
from quickadapt.errors import BadInput
from quickadapt.progress import log


def match_columns(data: Dataset, columns: list[str] | None, reference: str, *, drop_extra: bool = False) -> Dataset:
    """`data` with its feature columns in the order of `columns`, the names `reference` (the
    training data, the source) had. Unchanged when either side has no names (an .npz) or the
    names agree; reordered, with a note, when they are the same names in another order; refused
    when every name differs. Missing columns are refused by name; extra ones too, unless
    `drop_extra` (predict: an id kept to join the predictions back), which leaves them out with a
    note."""
    if data.modality != "features":
        return data
    if bool(columns) != bool(data.columns):  # an .npz beside a named csv: nothing to match by
        _note_read_by_position(data, columns, reference)
        return data
    if not columns or data.columns == list(columns):
        return data
    if len(set(columns)) == len(columns) and len(set(data.columns)) == len(data.columns):
        missing = [c for c in columns if c not in data.columns]
        extra = [c for c in data.columns if c not in columns]
        if missing and not (extra and len(extra) == len(data.columns)):  # all renamed: the message below
            raise BadInput(f"{data.name or 'data'}: {len(missing)} feature column{'s' if len(missing) > 1 else ''} of "
                           f"{reference} missing: {_shown(missing)}"
                           + (f" (and {_shown(extra)} not in it)" if extra else ""))
        if extra and not missing and not drop_extra:
            raise BadInput(f"{data.name or 'data'}: column{'s' if len(extra) > 1 else ''} {_shown(extra)} not in "
                           f"{reference}; remove {'them' if len(extra) > 1 else 'it'}")
        if extra and not missing:
            log(f"note: {data.name or 'data'}: column{'s' if len(extra) > 1 else ''} {_shown(extra)} not in {reference}: left out")
            order = [data.columns.index(c) for c in columns]
            return replace(data, inputs=np.asarray(data.inputs)[:, order], columns=list(columns))
    if len(data.columns) != len(columns):  # the encoder's own check says it better: 3 features, not 2
        return data
    if sorted(data.columns) == sorted(columns) and len(set(columns)) == len(columns):
        order = [data.columns.index(c) for c in columns]
        log(f"note: {data.name or 'data'}: feature columns reordered by name to match {reference}")
        return replace(data, inputs=np.asarray(data.inputs)[:, order], columns=list(columns))
    raise BadInput(f"{data.name or 'data'}: its feature columns ({_shown(data.columns)}) are not those of {reference} "
                   f"({_shown(columns)}); give the columns the names they had there")


def _note_read_by_position(data: Dataset, columns: list[str] | None, reference: str) -> None:
    """Say that one side's names went unchecked (a shuffled csv would be read wrong), when the
    counts agree; a wrong count is the encoder's to refuse."""
    if np.asarray(data.inputs).ndim == 2 and np.asarray(data.inputs).shape[1] == len(columns or data.columns):
        if columns:
            log(f"note: {data.name or 'data'} has no column names: its features are read by position as "
                f"{reference}'s {_shown(list(columns))}")
        else:
            log(f"note: {data.name or 'data'}: {reference} had no column names: its columns "
                f"{_shown(list(data.columns))} are read by position")


ROW_ID_NAMES = {"id", "idx", "index", "row", "row_id", "rowid", "key", "no", "number"}


def note_row_numbers(data: Dataset) -> None:
    """A column of the training data that numbers the rows (named id, or counting 1, 2, 3, ...)
    is read as a feature like any other, and then carries no meaning but the file's order (an
    `id` column took iris from 95 to 72 %): say so, since only the user knows whether it means
    something. At training only: later data is read by the model's own columns."""
    if data.modality != "features" or not data.columns:
        return
    x = np.asarray(data.inputs)
    counting = [n for j, n in enumerate(data.columns) if len(x) >= 10 and np.all(np.diff(x[:, j]) == 1)]
    named = [n for n in data.columns if n.strip().lower() in ROW_ID_NAMES]
    suspects = list(dict.fromkeys(named + counting))
    if suspects:
        many = len(suspects) > 1
        log(f"note: {data.name or 'data'}: column{'s' if many else ''} {', '.join(f'`{n}`' for n in suspects[:3])} "
            f"look{'' if many else 's'} like row numbers and {'are' if many else 'is'} read as a feature; "
            f"remove {'them' if many else 'it'} if {'they mean' if many else 'it means'} nothing about the label")


# what a table often carries beside its measurements: which group, domain, fold or split a row is
# in, and how much it weighs; none of them is read as such from a feature csv (a plain `weight` is
# as often a measurement, a body's or a parcel's: not named)
BOOKKEEPING_NAMES = {"group", "groups", "domain", "fold", "folds", "split", "sample_weight"}


def note_bookkeeping(data: Dataset) -> None:
    """A numeric column of the training data named as bookkeeping is read as a feature like any
    other (a random `group` column beside iris's four took its cross-validated accuracy from 96.0
    to 95.3 %): say so, since only the user knows whether it means something. At training only,
    as note_row_numbers."""
    if data.modality != "features" or not data.columns:
        return
    found = [n for n in data.columns if n.strip().lower() in BOOKKEEPING_NAMES]
    if found:
        many = len(found) > 1
        log(f"note: {data.name or 'data'}: column{'s' if many else ''} {', '.join(f'`{n}`' for n in found[:3])} "
            f"{'are' if many else 'is'} read as {'features' if many else 'a feature'} like any other (a feature csv "
            "has no group, fold or weight column; only a text file's `group` column is read, by meta-train and "
            f"episodes); remove {'them' if many else 'it'} if {'they mean' if many else 'it means'} nothing about "
            "the label")


def _shown(names: list[str], most: int = 6) -> str:
    return ", ".join(names[:most]) + (f", ... ({len(names)} in all)" if len(names) > most else "")


__all__ = ["match_columns", "note_bookkeeping", "note_row_numbers"]
