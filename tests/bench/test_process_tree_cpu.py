"""CPU of a process tree, read from /proc: what ``bench.http_load`` charges a ``smsroute run`` request."""

from __future__ import annotations

import subprocess
import sys

from bench.cluster_cost import tree_cpu_seconds

BURN = ("import sys, time\n"
        "t = time.process_time()\n"
        "while time.process_time() - t < 0.3:\n"
        "    pass\n"
        "print('burnt', flush=True)\n"
        "sys.stdin.read()\n")  # stays alive (and counted) until the test closes its stdin


def test_a_trees_cpu_counts_its_grandchildren_and_not_other_processes():
    parent = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {BURN!r}])"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "burnt"  # the grandchild has spent its 0.3 s
        assert tree_cpu_seconds(parent.pid) >= 0.29  # (0.3 s, counted in clock ticks)
        bystander = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                     stdin=subprocess.PIPE)
        try:
            assert tree_cpu_seconds(bystander.pid) < 0.29  # another tree: the burn is not in it
        finally:
            bystander.communicate("")
    finally:
        parent.communicate("")
    assert tree_cpu_seconds(parent.pid) == 0.0  # ended: nothing left to count
