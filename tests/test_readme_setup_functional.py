"""The README's first two commands, the whole set-up on a fresh machine, say what is true.

The first installs the package and runs ``smsroute run`` with no flag and no config file: it must start
the embedded default on 127.0.0.1:8080/8081 with its data in ``./data``. As root with ``unshare`` it runs
verbatim (the installed console script, in an empty directory) in a private network namespace, so the
default ports are free; elsewhere that part is skipped. The second must install and test exactly as
``.ci/run`` does, which adds only system tools, a SoftHSM2 token and ruff before the same pytest.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from tests.engine.cli_support import SMSROUTE
from tests.waiting import wait_for

pytestmark = pytest.mark.functional

ROOT = Path(__file__).resolve().parents[1]


def _setup_lines() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first = re.search(r"```sh\n(.*?)```", text, re.S)
    assert first and text.index(first.group(0)) < text.index("\n## "), "the set-up block comes first"
    return [line.split("#")[0].strip() for line in first.group(1).strip().splitlines()]


def test_the_readme_test_command_is_what_ci_runs():
    engine_line, test_line = _setup_lines()
    assert engine_line == ("python3 -m venv .venv && .venv/bin/pip install -e . && "
                           ".venv/bin/smsroute run")
    assert test_line == ("python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && "
                         ".venv/bin/python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "python3 -m venv .venv\n" in ci
    assert ".venv/bin/pip install --quiet -e '.[test]'\n" in ci
    assert ci.rstrip().endswith("\n.venv/bin/python -m pytest")  # the same run, no other arguments
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for package in ("softhsm2", "curl", "jq", "iproute2", "util-linux"):  # what else .ci/run installs
        assert package in ci and f"`{package}`" in readme[:readme.index("## Running it")]


def _private_network() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return False
    return subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"],
                          capture_output=True).returncode == 0


@pytest.mark.skipif(not _private_network(), reason="needs root, unshare and ip for the default ports")
def test_smsroute_run_with_no_flag_starts_the_embedded_default_on_the_default_ports(tmp_path):
    proc = subprocess.Popen(["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" run',
                             SMSROUTE], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(x.rstrip("\n") for x in proc.stdout),
                              daemon=True)
    reader.start()
    try:
        wait_for(lambda: any(x.startswith("control port:") for x in lines) or proc.poll() is not None,
                 "the running lines", 60)
        out = "\n".join(lines)
        assert "customer API: http://127.0.0.1:8080/v1" in lines, out
        assert "control port: http://127.0.0.1:8081/" in lines, out
        assert f"data in {tmp_path / 'data'}; POPs fra, sin, gru; carriers 6; one process" in out
        assert (tmp_path / "data" / "operator.token").stat().st_mode & 0o777 == 0o600
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(60) == 0, out
        reader.join(5)
        assert lines[-1] == "smsroute stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
