"""The msgpack encoder of the hot store writes: a message record, a webhook event, a request-log entry.

Why not ``msgpack.packb``: it builds a ``Packer`` on every call, ~0.45 µs for a message record's 19
fields, and a message's record is packed three times in its life. msgspec's encoder writes the same
msgpack (the same bytes for these plain values: strings, ints, floats, None, bools, tuples, lists) in
~0.14 µs. Readers keep ``msgpack.unpackb``: the format on disk does not change.

Thread-safe: the encoder holds no state between calls (the actors' messages share one the same way,
``engine.messages``).
"""

from __future__ import annotations

import msgspec

pack = msgspec.msgpack.Encoder().encode
