"""A SoftHSM2 token for the PKCS#11 tests: the one ``.ci/run`` made, or one made here in a temp dir.

``.ci/run`` installs the ``softhsm2`` package, initialises a token in a temporary directory and exports
``SOFTHSM2_CONF``, ``SMSROUTE_TEST_PKCS11_TOKEN`` and ``SMSROUTE_TEST_PKCS11_PIN``. Run elsewhere, the first
test that needs a token makes one with ``softhsm2-util`` (SoftHSM reads ``SOFTHSM2_CONF`` once, when the
module is first loaded, so one token serves the whole test process; tests use distinct key labels). The
tests skip only if the SoftHSM2 module is truly absent, and never under CI (``CI`` set), where ``.ci/run``
guarantees it.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

MODULE_CANDIDATES = ("/usr/lib/softhsm/libsofthsm2.so",
                     "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                     "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
                     "/usr/local/lib/softhsm/libsofthsm2.so")


@dataclass(frozen=True)
class Token:
    module: str
    label: str
    pin: str


_token: Token | None = None


def module_path() -> str | None:
    configured = os.environ.get("SMSROUTE_TEST_PKCS11_MODULE")
    candidates = (configured,) if configured else MODULE_CANDIDATES
    return next((p for p in candidates if p and os.path.exists(p)), None)


def softhsm_token() -> Token:
    """The test process's token (skips the calling test if SoftHSM2 is not installed, outside CI)."""
    global _token
    if _token is not None:
        return _token
    module = module_path()
    if module is None:
        if os.environ.get("CI"):
            pytest.fail("SoftHSM2 (libsofthsm2.so) is missing under CI: .ci/run should install it")
        pytest.skip("SoftHSM2 is not installed (no libsofthsm2.so); .ci/run installs the softhsm2 "
                    "package: apt-get install softhsm2")
    label = os.environ.get("SMSROUTE_TEST_PKCS11_TOKEN")
    pin = os.environ.get("SMSROUTE_TEST_PKCS11_PIN")
    if not (label and pin and os.environ.get("SOFTHSM2_CONF")):
        label, pin = "smsroute-test", secrets.token_hex(4)
        _init_token(label, pin)
    _token = Token(module, label, pin)
    return _token


def _init_token(label: str, pin: str) -> None:
    util = shutil.which("softhsm2-util")
    if util is None:
        pytest.fail("libsofthsm2.so is installed but softhsm2-util is not: reinstall softhsm2")
    root = Path(tempfile.mkdtemp(prefix="smsroute-softhsm-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)  # the token lives as long as the process
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)  # before the module is loaded by python-pkcs11
    subprocess.run([util, "--init-token", "--free", "--label", label, "--pin", pin,
                    "--so-pin", secrets.token_hex(4)], check=True, capture_output=True)
