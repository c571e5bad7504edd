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
    when other names stand in the same number of columns. Missing columns are refused by name;
    extra ones too, unless `drop_extra` (predict: an id kept to join the predictions back), which
    leaves them out with a note."""
    if data.modality != "features" or not columns or not data.columns or data.columns == list(columns):
        return data
    if len(set(columns)) == len(columns) and len(set(data.columns)) == len(data.columns):
        missing = [c for c in columns if c not in data.columns]
        extra = [c for c in data.columns if c not in columns]
        if missing and len(data.columns) != len(columns):
            raise BadInput(f"{data.name or 'data'}: {len(missing)} feature column{'s' if len(missing) > 1 else ''} of "
                           f"{reference} missing: {_shown(missing)}")
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


def _shown(names: list[str], most: int = 6) -> str:
    return ", ".join(names[:most]) + (f", ... ({len(names)} in all)" if len(names) > most else "")


__all__ = ["match_columns"]
