"""smsroute: a transit-layer A2P SMS gateway engine.

The public API is :class:`Engine` (embedding), :class:`Accepted`, :class:`NewAccount`, the settings loader
and the error tree in :mod:`engine.errors`. The names are imported lazily, so that low-level modules
(``storage.*`` importing ``engine.errors``) can be imported alone without pulling in the whole engine.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Accepted", "Engine", "NewAccount", "Settings", "StatusRecord", "load_settings"]

_WHERE = {
    "Accepted": "engine._engine",
    "Engine": "engine._engine",
    "StatusRecord": "engine._engine",
    "NewAccount": "engine.accounts",
    "Settings": "engine.config",
    "load_settings": "engine.config",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
