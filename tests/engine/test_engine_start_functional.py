"""Engine.start with HTTP: a port already in use fails cleanly and leaves nothing running."""

from __future__ import annotations

import socket

import pykka
import pytest

from engine import Engine


def test_a_busy_http_port_makes_start_fail_and_stops_every_actor(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OSError):
            Engine.start(data_dir=tmp_path / "data", http=True,
                         overrides={"http": {"customer_port": port, "control_port": 0}})
    assert pykka.ActorRegistry.get_all() == []
    # the data dir is usable again at once (no environment left open by a half-started engine)
    engine = Engine.start(data_dir=tmp_path / "data")
    try:
        assert not engine.stopping
    finally:
        engine.stop()
    assert engine.stopping
