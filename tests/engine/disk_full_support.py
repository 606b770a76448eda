"""A disk that really fills up, for the full-disk tests: a tiny tmpfs in a private mount namespace.

Each full-disk test runs a child Python process (its source as a string) inside ``unshare -m`` after
mounting a tmpfs of a few MiB where the test says (the tmpfs disappears with the namespace, so nothing is
left mounted); the child prints a JSON object as its last line and logs to standard error. Needs root and
``unshare``: :data:`needs_tiny_tmpfs` skips the test otherwise.

Inside a child, wait with ``tests.waiting.wait_for`` (the child runs from the repository root, so
``tests`` is importable there) and use :func:`fill_disk` / :func:`pin_pages` below.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


@functools.cache
def private_mounts_allowed() -> bool:
    """Whether this process may make a private mount namespace (root, and ``unshare`` works here)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return probe.returncode == 0


needs_tiny_tmpfs = pytest.mark.skipif(not private_mounts_allowed(), reason="needs root and a private mount "
                                      "namespace (unshare -m) for a tiny tmpfs")

ON_TMPFS = 'mkdir -p "$MNT" && mount -t tmpfs -o size="$SIZE" tmpfs "$MNT" && exec "$PY" -c "$CHILD" "$ARG"'


def run_in_private_mounts(script: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the bash ``script`` in a private mount namespace, with ``env`` added to this environment."""
    return subprocess.run(["unshare", "-m", "bash", "-c", script], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout, cwd=os.getcwd())


def run_on_tiny_tmpfs(mount: Path, child: str, *, arg: Path | None = None, size: str = "4m",
                      env: dict[str, str] | None = None, timeout: float = 120) -> tuple[dict[str, Any], str]:
    """Mount a ``size`` tmpfs on ``mount`` (created if needed) in a private mount namespace and run the
    Python source ``child`` there, given ``arg`` (default: ``mount``) as its argument and ``env`` in its
    environment. The JSON object of its last line of output, and its standard error (the log); fails the
    test if it exits non-zero."""
    done = run_in_private_mounts(ON_TMPFS, {"MNT": str(mount), "SIZE": size, "PY": sys.executable,
                                            "CHILD": child, "ARG": str(arg or mount), **(env or {})},
                                 timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


# --- for the child ----------------------------------------------------------------------------------


def fill_disk(directory: str | Path, name: str = "fill") -> list[Path]:
    """Fill the file system of ``directory`` to its last page (64 KiB blocks, then 4 KiB ones); the files
    written, to remove when space should return."""
    files = []
    for n, size in enumerate(("64k", "4k")):
        path = Path(directory) / f"{name}{n}"
        subprocess.run(["dd", "if=/dev/zero", f"of={path}", f"bs={size}"], stderr=subprocess.DEVNULL)
        files.append(path)
    return files


def free_disk(files: list[Path]) -> None:
    for path in files:
        path.unlink()


def pin_pages(env: Any) -> Any:
    """A read transaction on the LMDB environment ``env`` (as a backup with ``mdb_copy`` holds): until it
    is aborted, LMDB cannot reuse the pages its writers free, so on a full disk even a status change needs
    pages the disk cannot give. Abort it to unpin."""
    return env.begin()
