"""Instructions per encode and per decode of every actor message type (``engine.messages``), under callgrind.

Why: the codec's share of a message is a few hundred nanoseconds per hop, far below what a timed run
resolves on the shared machine. Each type gets a fixed instance (batches of five items) that is encoded
``--loops`` times, then decoded as often; ``os.getppid()`` between the phases is the marker callgrind
dumps a profile at, so each phase's count lands in a file of its own (an actor's ``decode_or_drop`` is
measured too)::

    PYTHONHASHSEED=0 valgrind --tool=callgrind --dump-before=os_getppid \\
        --callgrind-out-file=/tmp/codec.out .venv/bin/python -m bench.codec_instructions --loops 200
    .venv/bin/python -m bench.codec_instructions --report /tmp/codec.out

The report prints instructions per call (the loop's own cost, measured with ``id``, subtracted). Without
valgrind the first command only runs the loops (no figures).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import typing
from typing import Any, Union

ITEMS = 5  # items in a batch field


def sample(hint: Any) -> Any:
    """A fixed, typical value of a field type as the codec declares it."""
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        return 125_000
    if origin is Union or type(hint).__name__ == "UnionType":
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return sample(inner)
    if origin is list:
        return [sample(typing.get_args(hint)[0]) for _ in range(ITEMS)]
    if isinstance(hint, type) and issubclass(hint, tuple) and hasattr(hint, "_fields"):
        hints = typing.get_type_hints(hint, include_extras=True)
        return hint(*[sample(hints[f]) for f in hint._fields])
    return {int: 1_234_567, float: 1_764_000_000.25, bool: True, str: "msg_0123456789abcdef",
            bytes: bytes(range(32)), Any: 1_234_567}[hint]


def instances() -> list[tuple[str, Any]]:
    from engine import messages as m

    out = []
    for _tag, cls in sorted(m.message_types().items()):
        hints = typing.get_type_hints(cls, include_extras=True)
        out.append((cls.__name__, cls(*[sample(hints[name]) for name in cls._fields])))
    return out


def run(loops: int) -> None:
    from engine import messages as m

    encode, decode, decode_or_drop, marker = m.encode, m.decode, m.decode_or_drop, os.getppid
    todo = instances()
    for _name, msg in todo:  # warm: the decoder is built, every path run once
        decode(encode(msg))
    rng = range(loops)
    marker()  # dump 1: start-up
    for _ in rng:
        id(todo)
    marker()  # dump 2: the loop alone
    for _name, msg in todo:
        raw = encode(msg)
        for _ in rng:
            encode(msg)
        marker()
        for _ in rng:
            decode(raw)
        marker()
        for _ in rng:
            decode_or_drop(raw, "bench")
        marker()
    # (the rest of the run lands in the last dump)


def report(prefix: str, loops: int) -> None:
    def total(path: str) -> int:
        with open(path) as f:
            for line in f:
                if line.startswith("summary:"):
                    return int(line.split()[1])
        raise ValueError(f"no summary in {path}")

    files = sorted(glob.glob(prefix + ".*"), key=lambda p: int(re.sub(r".*\.", "", p)))
    counts = [total(p) for p in files]
    loop = counts[1]
    print(f"{'message':24s} {'encode':>8s} {'decode':>8s} {'both':>8s} {'or_drop':>8s}"
          "  (instructions per call; or_drop: decode_or_drop, an actor's decode)")
    sums = [0.0, 0.0, 0.0]
    for i, (name, _msg) in enumerate(instances()):
        enc, dec, drop = ((counts[2 + 3 * i + k] - loop) / loops for k in range(3))
        for k, v in enumerate((enc, dec, drop)):
            sums[k] += v
        print(f"{name:24s} {enc:8.0f} {dec:8.0f} {enc + dec:8.0f} {drop:8.0f}")
    print(f"{'sum over types':24s} {sums[0]:8.0f} {sums[1]:8.0f} {sums[0] + sums[1]:8.0f} {sums[2]:8.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loops", type=int, default=200)
    ap.add_argument("--report", metavar="OUT", help="print the figures of a callgrind run (its out file)")
    args = ap.parse_args()
    if args.report:
        report(args.report, args.loops)
    else:
        run(args.loops)


if __name__ == "__main__":
    main()
