"""A config field's declaration (default, check, help, short flag) and the checks it may name.

The fields themselves are declared in configs/default_h36m_configs.py; validation (lib/config_utils.py) and the
command lines' short flags (run/common.config_flags) are derived from those declarations.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Check = Callable[[Any], "str | None"]  # None when the value is fine, else what it must be ("a number >= 0")

MAX_SEED = 2 ** 63 - 1  # seeds of the sampling chunks are taken modulo 2**63 (lib/sharded.chunk_seed)


def number(lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False,
           integer: bool = False) -> Check:
    """A finite number (a whole one with integer) within [lo, hi], either end open on request."""
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not float(v).is_integer()):
            return "a whole number" if integer else "a number"
        if not math.isfinite(v):
            return "finite"
        if lo is not None and (v < lo or (lo_open and v == lo)):
            return f"{'>' if lo_open else '>='} {lo:g}"
        if hi is not None and (v > hi or (hi_open and v == hi)):
            return f"{'<' if hi_open else '<='} {hi:g}"
        return None
    return check


class OneOf:
    """A check that a value is one of some names (the names are also a command line's choices)."""

    def __init__(self, *names: str):
        self.names = names

    def __call__(self, v: Any) -> str | None:
        return None if v in self.names else f"one of {', '.join(self.names)}"


def switch(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def text(v: Any) -> str | None:
    return None if isinstance(v, str) else "text"


def of_type(default: Any) -> Check:
    """The check of a field declared without one: a value of its default's kind."""
    if isinstance(default, bool):
        return switch
    if isinstance(default, (int, float)):
        return number(integer=isinstance(default, int))
    return text


@dataclass(frozen=True)
class Setting:
    """One config field, declared once: its key ('section.field'), default, check (by default: of its default's
    kind), what it does and, where a command line has a short flag for it, that flag."""

    key: str
    default: Any
    check: Check | None = None
    help: str = ""
    flag: str | None = None

    def __post_init__(self) -> None:
        if self.check is None:
            object.__setattr__(self, "check", of_type(self.default))
