"""smsroute: a transit-layer A2P SMS gateway engine.

The public API is :class:`Engine` (embedding), :class:`Accepted`, :class:`NewAccount`, the settings loader
and the error tree in :mod:`engine.errors`.
"""

from engine._engine import Accepted, Engine, StatusRecord
from engine.accounts import NewAccount
from engine.config import Settings, load_settings

__all__ = ["Accepted", "Engine", "NewAccount", "Settings", "StatusRecord", "load_settings"]
