"""Frozen dataclasses from TOML tables: every value type-checked, every unknown key refused by name.

The dataclass is the one place a section's keys, types and defaults are written (``engine.config``):
adding a key is adding a field. Types come from the field annotations (``int``, ``float`` — an int is
accepted and converted —, ``bool``, ``str``, ``dict``, ``list`` and unions with ``None``); numbers must be
finite and not negative, and a field annotated ``Annotated[int, Range(low, high)]`` must lie in its range
(the one place a key's bounds are written: a 0 that disables a protection, or a size no machine has, is
refused at load naming the key and its range); an unknown key is named in the error, with the closest
known key as a suggestion.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Limits:
...     window: int = 10
>>> typed_table(Limits, {"window": 20}, "limits")
Limits(window=20)
>>> typed_table(Limits, {"windw": 20}, "limits")
Traceback (most recent call last):
...
engine.errors.ConfigError: config: unknown key 'windw' in [limits] (did you mean 'window'?)
>>> @dataclass(frozen=True)
... class Bounded:
...     window: Annotated[int, Range(1, 1000)] = 10
>>> typed_table(Bounded, {"window": 0}, "limits")
Traceback (most recent call last):
...
engine.errors.ConfigError: config: limits.window = 0 must be between 1 and 1000
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Annotated, Any, TypeVar

from engine.errors import ConfigError

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Range:
    """The allowed values of a number field: ``low`` to ``high`` inclusive (``open_low``: more than
    ``low``, for a duration or rate whose 0 would disable what it bounds)."""

    low: float
    high: float
    open_low: bool = False
    why: str = ""  # said in the refusal, after the range

    def admits(self, value: float) -> bool:
        return (value > self.low if self.open_low else value >= self.low) and value <= self.high

    def words(self) -> str:
        """``between 1 and 65,535`` / ``more than 0 and at most 3,600``."""
        low, high = _number_words(self.low), _number_words(self.high)
        return f"more than {low} and at most {high}" if self.open_low else f"between {low} and {high}"

    def refusal(self) -> str:
        return self.words() + (f" ({self.why})" if self.why else "")


def _number_words(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def ranges(cls: type) -> dict[str, Range]:
    """The ``Range`` of each bounded field of a settings dataclass (for the refusal and the README)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return {name: meta for name, hint in hints.items() if typing.get_origin(hint) is Annotated
            for meta in hint.__metadata__ if isinstance(meta, Range)}


def typed_table(cls: type[T], table: Any, section: str, note: str = "") -> T:
    """Build the frozen dataclass ``cls`` from a TOML table: unknown keys are refused by name, each value
    must have its field's type (an int is accepted for a float), and numbers must not be negative."""
    if not isinstance(table, dict):
        raise ConfigError(f"config: [{section}] must be a table")
    hints = typing.get_type_hints(cls)
    bounds = ranges(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = "; ".join(x for x in (note, f"did you mean {close[0]!r}?" if close else "") if x)
            raise ConfigError(f"config: unknown key {key!r} in [{section}]"
                              + (f" ({hint})" if hint else ""))
    values = {}
    for name in known:
        if name not in table:
            continue
        value, hint = table[name], hints[name]
        if not _has_type(value, hint):
            raise ConfigError(f"config: {section}.{name} must be {_type_words(hint)}")
        if isinstance(value, int) and not isinstance(value, bool) and float in _members(hint) \
                and int not in _members(hint):
            value = float(value)
        if isinstance(value, float) and not math.isfinite(value):  # TOML has inf and nan: a timeout of
            #                                                             inf would disable its protection
            raise ConfigError(f"config: {section}.{name} must be a finite number")
        if is_number(value) and value < 0:
            raise ConfigError(f"config: {section}.{name} must not be negative")
        if is_number(value) and name in bounds and not bounds[name].admits(value):
            raise ConfigError(f"config: {section}.{name} = {value:g} must be {bounds[name].refusal()}")
        values[name] = value
    return cls(**values)


def _members(hint: Any) -> tuple:
    """The alternatives of a type hint: ``int | None`` -> (int, NoneType); ``dict[str, Any]`` -> (dict,)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return tuple(m for arg in typing.get_args(hint) for m in _members(arg))
    return (typing.get_origin(hint) or hint,)


def _has_type(value: Any, hint: Any) -> bool:
    for member in _members(hint):
        if member is Any:
            return True
        if member is type(None) and value is None:
            return True
        if member is bool and isinstance(value, bool):
            return True
        if member is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if member is float and is_number(value):
            return True
        if member in (str, dict, list) and isinstance(value, member):
            return True
    return False


_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
          dict: "a table", list: "a list", type(None): "absent"}


def _type_words(hint: Any) -> str:
    return " or ".join(_WORDS.get(m, getattr(m, "__name__", str(m))) for m in _members(hint)
                       if m is not type(None))


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
