"""Method settings: frozen dataclasses filled from `--set key=value` strings or dicts."""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

from quickadapt.errors import BadInput


def parse_set_options(pairs: list[str] | None) -> dict[str, Any]:
    """Turn ["lr=1e-3", "epochs=5"] into {"lr": 0.001, "epochs": 5}; values are JSON when they parse."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"--set expects key=value, got {pair!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def build_config(cls: type, params: Mapping[str, Any] | None, owner: str):
    """Instantiate config dataclass `cls` from `params`, naming unknown keys and bad types."""
    params = dict(params or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise BadInput(
            f"unknown setting {unknown[0]!r} for {owner}: valid settings are {', '.join(sorted(fields)) or 'none'}"
        )
    coerced = {}
    for key, value in params.items():
        default = fields[key].default
        if isinstance(default, bool):
            if isinstance(value, str):
                value = value.lower() in ("1", "true", "yes")
            value = bool(value)
        elif isinstance(default, int) and not isinstance(default, bool):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool):
                raise BadInput(f"setting {key!r} for {owner} must be an integer, got {value!r}")
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise BadInput(f"setting {key!r} for {owner} must be a number, got {value!r}")
            value = float(value)
        coerced[key] = value
    try:
        return cls(**coerced)
    except (TypeError, ValueError) as exc:
        raise BadInput(f"bad setting for {owner}: {exc}") from None


def config_to_dict(cfg) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
