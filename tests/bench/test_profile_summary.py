"""The py-spy summary: threads, self and inclusive shares; lock waits are not work."""

from __future__ import annotations

from bench.profile_summary import format_summary, parse_raw

RAW = [
    "thread (1): PopActor-3;run (a.py:1);flush (pop.py:10);put (store.py:5) 6\n",
    "thread (2): PopActor-4;run (a.py:1);flush (pop.py:11) 2\n",
    "thread (3): MainThread;main (m.py:1);send (d.py:2) 2\n",
    "thread (4): LedgerActor-0;run (a.py:1);Condition.wait (threading.py:320) 90\n",
]


def test_samples_are_split_by_thread_kind_and_function():
    threads, self_, inclusive, total = parse_raw(RAW)
    assert total == 10
    assert threads == {"PopActor": 8, "MainThread": 2}
    assert self_["put (store.py)"] == 6 and self_["flush (pop.py)"] == 2
    assert inclusive["flush (pop.py)"] == 8 and inclusive["run (a.py)"] == 8


def test_lock_waits_can_be_kept():
    _, _, _, total = parse_raw(RAW, drop_idle=False)
    assert total == 100


def test_the_summary_prints_percentages():
    text = format_summary(RAW)
    assert "80.0%  PopActor" in text
    assert "60.0%  put (store.py)" in text


def test_process_prefixes_from_subprocess_profiles_are_skipped():
    raw = ['process 7:"python -c import x; run()";thread (9): PopActor-1;flush (pop.py:3) 4\n']
    threads, self_, _, total = parse_raw(raw)
    assert threads == {"PopActor": 4} and self_ == {"flush (pop.py)": 4} and total == 4
