"""Choosing for the user: which transfer strategy suits their examples (`--strategy auto`)."""
from __future__ import annotations

from quickadapt.select.strategy import AUTO, AutoConfig, auto_candidates, auto_settings, choose_strategy

__all__ = ["AUTO", "AutoConfig", "auto_candidates", "auto_settings", "choose_strategy"]
