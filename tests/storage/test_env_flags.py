"""What each LMDB environment promises about a power loss (storage.env's durability contract).

A power loss cannot be simulated here, so the test pins the flags the promise rests on: a commit of a
POP environment fsyncs everything; a commit of the core environment fsyncs at least its data pages
before LMDB writes the meta page that points to them (MDB_NOMETASYNC, never MDB_NOSYNC, which may leave
a corrupt environment after a power loss)."""

from __future__ import annotations

from engine import Engine
from storage.env import open_env


def test_a_default_environment_fsyncs_data_and_meta_at_every_commit(tmp_path):
    env = open_env(tmp_path / "pop")
    try:
        assert env.flags()["sync"] and env.flags()["metasync"]
    finally:
        env.close()


def test_the_core_environment_fsyncs_data_pages_before_their_meta_page(tmp_path):
    engine = Engine.start(data_dir=tmp_path)
    try:
        flags = engine.runtime.core_env.flags()
        assert flags["sync"] is True  # never MDB_NOSYNC
        assert flags["metasync"] is False  # the meta page at env.sync(True) or the next commit
        assert all(s.env.flags()["sync"] and s.env.flags()["metasync"]
                   for s in engine.runtime.pop_stores.values())
    finally:
        engine.stop()
