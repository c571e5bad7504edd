"""`fomaml`: first-order MAML (Finn et al. 2017): MAML whose outer gradient ignores the
second derivatives of the inner steps (the adapted parameters' gradient is used directly)."""
from __future__ import annotations

from dataclasses import dataclass

from quickadapt.meta.maml import MAML, MAMLConfig


@dataclass(frozen=True)
class FOMAMLConfig(MAMLConfig):
    first_order: bool = True


class FOMAML(MAML):
    name = "fomaml"
    Config = FOMAMLConfig
