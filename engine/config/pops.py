"""``[pops.<name>]``: the points of presence, each with a ``city`` (its name when not given).

A configuration has at least one POP: every carrier belongs to one and every route names one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.errors import ConfigError
from engine.typed_tables import typed_table


@dataclass(frozen=True)
class PopSettings:
    name: str
    city: str


@dataclass(frozen=True)
class _PopTable:
    """The keys of a ``[pops.<name>]`` table (checked like every other table)."""

    city: str = ""  # "": the POP's name


def pops_from_table(table: dict[str, Any]) -> dict[str, PopSettings]:
    """The ``[pops]`` table's POPs by name (at least one)."""
    pops = {}
    for name, pop in table.items():
        if not isinstance(pop, dict):
            raise ConfigError(f"config: [pops.{name}] must be a table")
        pops[name] = PopSettings(name=name, city=typed_table(_PopTable, pop, f"pops.{name}").city or name)
    if not pops:
        raise ConfigError("config: at least one [pops.<name>] is required")
    return pops
