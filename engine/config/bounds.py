"""The ranges several sections share (a port, a timeout, a mebibyte).

Every number of every table has its allowed range on its field (``Annotated[int, Range(low, high)]``),
checked when the configuration is loaded (config: <key> = <value> must be between ...) and listed in
the README by ``ranges_text`` (a test keeps the two equal). A low end of 1 (or "more than 0") is where 0
would refuse everything or disable a protection; a high end is beyond any use (a map no address space
holds, a cache no memory holds) or is a promise (bodies 24 hours at most). A range only one section
uses is written in that section's module.
"""

from __future__ import annotations

from engine.typed_tables import Range

MIB = 1 << 20
PORT = Range(1, 65535)
TIMEOUT = Range(0, 3600, open_low=True)
