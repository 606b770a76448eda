"""Summarise a py-spy profile of a bench run: where the time goes, by thread and by function.

Why: a flame graph needs a browser; the lead needs the top hot spots in a report. Record with::

    py-spy record -r 200 -f raw -o run.raw --threads -- python -m bench --mode throughput --no-progress
    python -m bench.profile_summary run.raw

and get: samples per thread kind (actor class, with the numeric suffix dropped), the functions with the
most *self* samples (where the interpreter actually was), and the most *inclusive* samples (the function
or anything it called). Line numbers are dropped so one function is one row.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter

#: Leaf frames that mean "blocked, not working" (py-spy's idle detection misses lock waits).
IDLE_LEAVES = ("Condition.wait (threading.py)", "Event.wait (threading.py)", "Queue.get (queue.py)")
_THREAD = re.compile(r"^thread \(\d+\): ([^;]*?)(?:-\d+)?$")
_LINE = re.compile(r" \(([^:()]+):\d+\)$")


def parse_raw(
    lines: list[str], drop_idle: bool = True
) -> tuple[Counter[str], Counter[str], Counter[str], int]:
    """(samples by thread, self samples by function, inclusive samples by function, total samples).

    With ``drop_idle`` a stack whose leaf is a lock or queue wait (:data:`IDLE_LEAVES`) is not counted.
    """
    threads: Counter[str] = Counter()
    self_: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in lines:
        line = line.rstrip("\n")
        if not line:
            continue
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        # with --subprocesses a "process <pid>:<command line>" prefix (which may itself hold ';')
        # comes before the thread frame
        while len(frames) > 1 and not frames[0].startswith("thread ("):
            frames = frames[1:]
        thread = frames[0]
        match = _THREAD.match(thread)
        if match:
            thread, frames = match.group(1) or "main", frames[1:]
        names = [_function(f) for f in frames]
        if drop_idle and names and names[-1] in IDLE_LEAVES:
            continue
        total += count
        threads[thread] += count
        if names:
            self_[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
    return threads, self_, inclusive, total


def _function(frame: str) -> str:
    match = _LINE.search(frame)
    if not match:
        return frame
    return f"{frame[: match.start()]} ({match.group(1)})"


def format_summary(lines: list[str], top: int = 25) -> str:
    threads, self_, inclusive, total = parse_raw(lines)
    if not total:
        return "no samples"
    out = [f"{total} busy samples (lock and queue waits dropped)", "", "by thread:"]
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in threads.most_common(top)]
    out += ["", "self (where the interpreter was):"]
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in self_.most_common(top)]
    out += ["", "inclusive (the function and what it called):"]
    skip = ("Thread.", "_bootstrap", "Actor._actor_loop", "<module>", "_run_module", "run_path")
    rows = [(k, n) for k, n in inclusive.most_common() if not k.startswith(skip)]
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in rows[:top]]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", help="a py-spy 'raw' (collapsed stacks) file")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    with open(args.raw, encoding="utf-8") as fh:
        print(format_summary(fh.readlines(), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
