"""Method settings: frozen dataclasses filled from `--set key=value` strings or dicts."""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
import types
import typing
from typing import Any, Mapping

from quickadapt.errors import BadInput


def parse_set_options(pairs: list[str] | None) -> dict[str, Any]:
    """Turn ["lr=1e-3", "epochs=5"] into {"lr": 0.001, "epochs": 5}; values are JSON when they parse."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadInput(f"--set expects key=value, got {pair!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if key in out and out[key] != value:  # which one was meant cannot be guessed
            raise BadInput(f"--set {key} is given twice, as {out[key]!r} and {value!r}; keep one")
        out[key] = value
    return out


def bounded(default, lo: float | None = 0, hi: float | None = None, *, below_hi: bool = False, above_lo: bool = False,
            means: dict | None = None):
    """A numeric setting's field with the range it accepts (the default range is >= 0: counts,
    rates, weights and seconds are never negative). `below_hi`/`above_lo`: that bound itself is
    excluded. `means`: values that stand for something else ({0: "no limit"}), which the
    listing of settings says, since `lr = 0.0` read plainly would freeze the encoder."""
    return dataclasses.field(default=default, metadata={"range": (lo, hi, below_hi, above_lo), "means": means or {}})


def count(default):
    """A setting that counts something that must exist: steps, a batch, a width (>= 1)."""
    return bounded(default, 1)


def positive(default):
    """A setting that must be above 0: a regularisation strength, a learning rate that is used."""
    return bounded(default, 0, above_lo=True)


def inverse_strength(default):
    """C, the inverse strength of an L2 penalty, for the torch logistic head: beyond 1e-6 .. 1e6
    its L-BFGS steps overflow float32 (and no data wants a penalty that strong or that weak)."""
    return bounded(default, 1e-6, 1e6)


def fraction(default, *, below_one: bool = False, means: dict | None = None):
    """A setting in [0, 1] (or [0, 1) with `below_one`: a dropout of 1 drops everything)."""
    return bounded(default, 0, 1, below_hi=below_one, means=means)


def own_rate():
    """An encoder learning rate whose 0 means the encoder's own fine-tuning rate (`finetune_lr`)."""
    return bounded(0.0, means={0: "the encoder's own rate"})


def no_limit(default=0):
    """A cap (seconds, steps) whose 0 means none."""
    return bounded(default, means={0: "no limit"})


def build_config(cls: type, params: Mapping[str, Any] | None, owner: str):
    """Instantiate config dataclass `cls` from `params`, naming unknown keys, bad types and
    values out of range (each field's type comes from its annotation, its range from
    `bounded`/`fraction`, else >= 0 for numbers)."""
    params = dict(params or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise BadInput(
            f"unknown setting {unknown[0]!r} for {owner}: valid settings are {', '.join(sorted(fields)) or 'none'}"
        )
    hints = typing.get_type_hints(cls)
    coerced = {key: _coerce(key, value, hints[key], fields[key], owner) for key, value in params.items()}
    try:
        return cls(**coerced)
    except (TypeError, ValueError) as exc:
        raise BadInput(f"bad setting for {owner}: {exc}") from None


def _coerce(key: str, value: Any, hint, field: dataclasses.Field, owner: str) -> Any:
    """`value` as the field's type (`as_type`), a number within the field's range."""
    where = f"setting {key!r} for {owner}"
    value = as_type(value, hint, where, field.default)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_range(value, field, where)
    return value


def as_type(value: Any, hint, where: str, default: Any = None) -> Any:
    """`value` as annotation `hint` says: a bool from true/false words, an int from 3 or 3.0, a
    finite float; None where the type allows it (`float | None`); strings and other types as given."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None and type(None) in args:
        return None
    kinds = [a for a in args if a is not type(None)]
    if str in kinds and isinstance(value, str):
        return value
    if bool in kinds:
        if isinstance(value, str) and value.lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.lower()]
        if isinstance(value, bool) or value in (0, 1):
            return bool(value)
        raise BadInput(f"{where} must be true or false, got {value!r}")
    if int in kinds or float in kinds:
        # numbers.Real: numpy's too (a grid over np.arange gave np.int64, "must be an integer")
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            if str in kinds:
                raise BadInput(f"{where} must be a number or a word such as {default!r}, got {value!r}")
            raise BadInput(f"{where} must be {'an integer' if float not in kinds else 'a number'}, got {value!r}")
        if not math.isfinite(value):
            raise BadInput(f"{where} must be a finite number, got {value!r}")
        if float not in kinds:
            if not float(value).is_integer():
                raise BadInput(f"{where} must be an integer, got {value!r}")
            return int(value)
        return float(value)
    return value


def _check_range(value: float, field: dataclasses.Field, where: str) -> None:
    problem = range_problem(value, field)
    if problem:
        raise BadInput(f"{where} {problem}")


def range_problem(value: float, field: dataclasses.Field) -> str | None:
    """What is wrong with `value` for `field`'s range ("must be at least 1, got 0"), or None."""
    lo, hi, below_hi, above_lo = field.metadata.get("range", (0, None, False, False))
    low = lo is not None and (value <= lo if above_lo else value < lo)
    high = hi is not None and (value >= hi if below_hi else value > hi)
    if not (low or high):
        return None
    if hi is None:
        return f"must be {'above' if above_lo else 'at least'} {lo:g}, got {value:g}"
    return f"must be between {lo:g}{' (excluded)' if above_lo else ''} and {hi:g}{' (excluded)' if below_hi else ''}, got {value:g}"


def describe_range(field: dataclasses.Field, hint) -> str:
    """A setting's accepted values in words, as `quickadapt strategies` lists them: "integer >= 1",
    "number in (0, 1]", "true/false", "word"; numbers without a declared range are >= 0."""
    args = set(typing.get_args(hint)) if typing.get_origin(hint) in (typing.Union, types.UnionType) else {hint}
    if bool in args:
        return "true/false"
    if not args & {int, float}:
        return "word"
    kind = "integer" if int in args and float not in args else "number"
    lo, hi, below_hi, above_lo = field.metadata.get("range", (0, None, False, False))
    if hi is None:
        text = f"{kind} {'>' if above_lo else '>='} {lo:g}" if lo is not None else kind
    else:
        text = f"{kind} in {'(' if above_lo else '['}{lo:g}, {hi:g}{')' if below_hi else ']'}"
    extra = [w for w, a in (("a word", str), ("none", type(None))) if a in args]
    means = "".join(f"; {value:g} = {meaning}" for value, meaning in field.metadata.get("means", {}).items())
    return text + (f" or {' or '.join(extra)}" if extra else "") + means


def describe_settings(cls: type) -> dict[str, str]:
    """Setting name -> its accepted values in words, for each field of config class `cls`."""
    hints = typing.get_type_hints(cls)
    return {f.name: describe_range(f, hints[f.name]) for f in dataclasses.fields(cls)}


def check_ranges(cfg) -> None:
    """Every number in config `cfg` within the range its field declares (ValueError naming the
    first that is not): the ranges `build_config` applies to --set values, for a config built
    directly in Python. Words and None (a setting's "auto") are left to the config."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value):
            raise ValueError(f"{f.name} must be a finite number, got {value!r}")
        problem = range_problem(value, f)
        if problem:
            raise ValueError(f"{f.name} {problem}")


@dataclasses.dataclass(frozen=True)
class Settings:
    """The base of every method's settings: its numbers are checked against their fields'
    ranges when it is built. A subclass with further checks calls `super().__post_init__()`."""

    def __post_init__(self):
        check_ranges(self)


_BOOL_WORDS = {"true": True, "yes": True, "1": True, "on": True, "false": False, "no": False, "0": False, "off": False}


def config_to_dict(cfg) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
