"""The README's curl quickstart works as written against ``smsroute run`` (account -> deposit -> sender
-> webhook -> send -> status, and the signed webhooks reach the receiver).

The blocks run in a child process (``tests/readme_quickstart_child.py``). As root with ``unshare`` the
child gets a private network namespace, so the blocks run verbatim, ports and all; elsewhere the ports
8080, 8081 and 9000 are swapped for free ones (the only change).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cluster.nats_server import free_ports
from tests.readme_quickstart_child import blocks

pytestmark = pytest.mark.functional

ROOT = Path(__file__).resolve().parents[1]


def _private_network() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return False
    return subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"],
                          capture_output=True).returncode == 0


def test_the_readme_has_the_three_quickstart_blocks_using_the_default_ports():
    found = blocks()
    assert set(found) == {"engine", "receiver", "client"}
    assert "--customer-port 8080 --control-port 8081" in found["engine"]
    assert "--port 9000" in found["receiver"] and "127.0.0.1:9000" in found["client"]


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")),
                    reason="the quickstart needs curl and jq (.ci/run installs them)")
def test_the_readme_quickstart_works_verbatim_against_smsroute_run(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT)}
    child = [sys.executable, "-m", "tests.readme_quickstart_child", str(tmp_path),
             str(tmp_path / "result.json")]
    if _private_network():
        command = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *child]
    else:
        ports = dict(zip(("8080", "8081", "9000"), free_ports(3), strict=True))
        command = [*child, json.dumps(ports)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    logs = "\n".join(f"--- {name}\n{text}" for name, text in result["logs"].items())
    assert "error" not in result, f"{result['error']}\n{logs}"
    assert result["client_rc"] == 0, logs
    assert result["message_id"], logs
    client = result["logs"]["client"]
    assert '"balance_micro_usd": 25000000' in client and '"sender": "ACME"' in client
    assert f'"id": "{result["message_id"]}"' in client
    receiver = result["logs"]["receiver"].splitlines()
    mine = [line for line in receiver if result["message_id"] in line]
    assert mine and all(line.startswith("signature verified: ") for line in mine), logs
    assert any('"status":"accepted"' in line for line in mine)
    assert result["engine_rc"] == 0 and result["receiver_rc"] == 0, logs
    assert result["logs"]["engine"].rstrip().endswith("smsroute stopped")
