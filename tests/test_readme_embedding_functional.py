"""The README's embedding snippet (``## Embedding``) runs as a developer would paste it, in a fresh
directory, and what its comments promise holds: the account's ``.id``, ``.api_key`` and
``.webhook_secret``, the accepted message's fields, a status record without the body, and a stopped
engine once the ``with`` block is left (its data directory unlocked)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.functional

ROOT = Path(__file__).resolve().parents[1]

# run after the snippet, in its namespace: what its comments say, as JSON on the last line
CHECKS = """
import json as _json
from storage.datadir import DataDirLock as _Lock
from pathlib import Path as _Path
_lock = _Lock(_Path("data")); _lock.acquire(); _lock.release()  # left unlocked: the engine stopped
print(_json.dumps({
    "account": [bool(getattr(account, a, "")) for a in ("id", "api_key", "webhook_secret")],
    "accepted": {a: getattr(accepted, a) for a in ("message_id", "segments", "price_micro_usd",
                                                    "pop", "country", "encoding")},
    "record": {"message_id": record.message_id, "status": record.status,
               "has_body": any("body" in f for f in record._fields)},
}))
"""


def _snippet() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("\n## Embedding\n"):]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "the Embedding section opens with a python block"
    return found.group(1)


def test_the_readme_embedding_snippet_runs_as_written_and_keeps_its_comments_promises(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _snippet() + CHECKS], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["account"] == [True, True, True]
    accepted = result["accepted"]
    assert accepted["message_id"].startswith("msg_") and accepted["segments"] == 1
    assert (accepted["pop"], accepted["country"], accepted["encoding"]) == ("fra", "DE", "GSM-7")
    assert accepted["price_micro_usd"] > 0
    assert result["record"]["message_id"] == accepted["message_id"]
    assert result["record"]["status"] in ("accepted", "delivered", "rejected", "failed", "expired")
    assert result["record"]["has_body"] is False
    assert (tmp_path / "data").is_dir()
