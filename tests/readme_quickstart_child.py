"""Runs the README's three quickstart blocks as a user would, and reports what happened as JSON.

Usage: python -m tests.readme_quickstart_child WORK_DIR RESULT_FILE [PORT_MAP_JSON]

Run inside a private network namespace (``unshare -n``, see the test) the blocks use their own ports
8080, 8081 and 9000 verbatim and cannot collide with anything else on the machine; loopback is brought up
first. Without one, PORT_MAP_JSON maps those numbers to free ports, the only change made to the blocks.
The engine and receiver blocks run in the background (as in their own terminals), the client block with
``bash -e -o pipefail`` (any failing command fails it); then the receiver's output is awaited for a final
status of the client's message, and the background blocks get SIGTERM, like Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

FINAL = ("delivered", "rejected", "failed", "expired")
DEADLINE = 60.0  # seconds for each wait below: a bound, not an expectation
README = Path(__file__).resolve().parents[1] / "README.md"


def blocks() -> dict[str, str]:
    """The ```sh blocks of the README that follow a ``<!-- quickstart: NAME -->`` marker."""
    text = README.read_text(encoding="utf-8")
    found = re.findall(r"<!-- quickstart: (\w+) -->\n```sh\n(.*?)```", text, re.S)
    return dict(found)


def wait_until(predicate, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def start(block: str, log: Path, work: Path) -> subprocess.Popen:
    return subprocess.Popen(["bash", "-c", block], cwd=work, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> int | None:
    """SIGTERM to the block's whole process group (bash and the smsroute it runs), like Ctrl-C."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        return proc.wait(DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        return None


def main() -> None:
    work, result_file = Path(sys.argv[1]), Path(sys.argv[2])
    ports = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    found = blocks()
    for name in found:
        for old, new in ports.items():
            found[name] = found[name].replace(old, str(new))
    result: dict = {"blocks": sorted(found)}
    logs = {name: work / f"{name}.log" for name in ("engine", "receiver", "client")}
    engine = start(found["engine"], logs["engine"], work)
    receiver = None
    try:
        wait_until(lambda: "control port:" in logs["engine"].read_text()
                   or engine.poll() is not None, "the engine's control port line")
        receiver = start(found["receiver"], logs["receiver"], work)
        wait_until(lambda: "webhook receiver:" in logs["receiver"].read_text(), "the receiver")
        client = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", found["client"]], cwd=work,
                                capture_output=True, text=True, timeout=DEADLINE)
        logs["client"].write_text(client.stdout + client.stderr)
        result["client_rc"] = client.returncode
        ids = re.findall(r"^message (\S+)$", client.stdout, re.M)
        result["message_id"] = ids[0] if ids else None
        if result["message_id"]:
            wait_until(lambda: _final_webhook(logs["receiver"], result["message_id"]),
                       "a final status at the receiver")
    except TimeoutError as exc:
        result["error"] = str(exc)
    finally:
        if receiver is not None:
            result["receiver_rc"] = stop(receiver)
        result["engine_rc"] = stop(engine)
        result["logs"] = {name: log.read_text() if log.exists() else "" for name, log in logs.items()}
        result_file.write_text(json.dumps(result))


def _final_webhook(log: Path, message_id: str) -> bool:
    for line in log.read_text().splitlines():
        verdict, _, body = line.partition(": ")
        if verdict == "signature verified" and message_id in body \
                and any(f'"status":"{s}"' in body for s in FINAL):
            return True
    return False


if __name__ == "__main__":
    main()
