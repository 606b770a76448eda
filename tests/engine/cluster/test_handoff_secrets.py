"""A worker or edge run by hand refuses a password in ``--overrides-json``.

A command line is readable by every local user (``ps``, ``/proc/<pid>/cmdline``): an SMSC password put in
``--overrides-json`` was taken without a word. It is refused, naming the option and the way that keeps it
private (``--overrides-stdin``), without echoing the password; stdin still takes it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from engine.cli import smsc_overrides
from engine.cluster import worker
from engine.config import load_settings

pytestmark = pytest.mark.functional

# what --smsc with an SMSC password makes of every carrier: SMPP binds that log in with it
WITH_PASSWORD = smsc_overrides(load_settings(None).raw, "127.0.0.1:2775", "acme", "hunter2")


def _worker(tmp_path, *extra: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cluster.worker", "--index", "0", "--workers", "1",
                           "--nats", "nats://127.0.0.1:1", "--data-dir", str(tmp_path / "w0"), *extra],
                          input=stdin, capture_output=True, text=True, timeout=60)


def test_a_password_in_overrides_json_is_refused_without_echoing_it(tmp_path):
    result = _worker(tmp_path, "--overrides-json", json.dumps(WITH_PASSWORD))
    assert result.returncode == 2
    assert "--overrides-json" in result.stderr and "--overrides-stdin" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "w0").exists()  # refused before anything started


def test_overrides_without_a_password_on_the_command_line_and_with_one_on_stdin_are_taken():
    from engine.cluster.handoff import overrides_from

    args = worker.build_parser().parse_args(["--index", "0", "--workers", "1", "--nats", "n",
                                             "--data-dir", "d", "--overrides-json",
                                             json.dumps({"engine": {"tick_ms": 7}})])
    assert overrides_from(args, None) == {"engine": {"tick_ms": 7}}
    args = worker.build_parser().parse_args(["--index", "0", "--workers", "1", "--nats", "n",
                                             "--data-dir", "d", "--overrides-stdin"])

    class Stdin:
        def readline(self) -> str:
            return json.dumps(WITH_PASSWORD) + "\n"

    assert overrides_from(args, Stdin()) == WITH_PASSWORD
