"""The key-encryption key in an HSM, over PKCS#11: :class:`Pkcs11KeyProvider`.

Why it exists: the privacy policy (9) says keys are "managed in an HSM-backed key vault". With
``[keys] provider = "pkcs11"`` the KEK that wraps every data key (body windows, store keys, per-account
keys, the HMAC secrets) is an AES-256 key object inside a PKCS#11 token — a hardware HSM, a cloud HSM, or
SoftHSM2 in tests — marked sensitive and non-extractable, so it never leaves the token. Wrapping is
AES-256-GCM performed by the token (``CKM_AES_GCM``, a random 96-bit IV per wrap, a fixed label as
associated data): a wrapped key is ``IV (12 bytes) | ciphertext | tag``.

Only the small data keys cross the PKCS#11 boundary, and only at start (the key ring), on a key's creation,
and on a miss of the per-account key cache; message bodies and records are sealed in process.

The key is found by its label (``pkcs11_key_label``). If it does not exist it is generated in the token, but
only on a first start: if ``keys.store`` already exists next to it, a missing KEK is an error (a new one
could unwrap nothing), exactly like a missing ``master.key``.

Thread-safety: one PKCS#11 session, used under a lock (a session is not safe for concurrent use). A PKCS#11
login belongs to the whole process, so a second provider in the same process (a restarted engine) opens
its session into the existing login.
Failures of the token (logged out, removed, an authentication failure) raise ``KeyUnavailable``.
Requires the ``python-pkcs11`` package (``pip install 'smsroute[hsm]'``).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from engine.errors import ConfigError, KeyUnavailable
from storage.keys import KEY_STORE_FILE

__all__ = ["Pkcs11KeyProvider", "read_pin"]

_AAD = b"smsroute-kek-pkcs11-v1"
_IV = 12


def read_pin(pin_env: str = "", pin_file: str = "") -> str:
    """The token's user PIN, from an environment variable or a file (never from the config itself)."""
    if bool(pin_env) == bool(pin_file):
        raise ConfigError("config: [keys] needs exactly one of pkcs11_pin_env and pkcs11_pin_file")
    if pin_env:
        pin = os.environ.get(pin_env)
        if not pin:
            raise ConfigError(f"config: [keys] pkcs11_pin_env names {pin_env}, which is not set")
        return pin
    try:
        pin = Path(pin_file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"config: cannot read [keys] pkcs11_pin_file: {exc.strerror}") from None
    if not pin:
        raise ConfigError("config: [keys] pkcs11_pin_file is empty")
    return pin


class Pkcs11KeyProvider:
    """A :class:`~storage.keys.KeyProvider` whose KEK is an AES key inside a PKCS#11 token."""

    def __init__(self, module: str, token_label: str, pin: str, *, key_label: str = "smsroute-kek",
                 directory: str | Path | None = None) -> None:
        try:
            import pkcs11
        except ImportError:
            raise ConfigError("config: [keys] provider = \"pkcs11\" needs the python-pkcs11 package "
                              "(pip install 'smsroute[hsm]')") from None
        self._pkcs11 = pkcs11
        self.description = f"pkcs11 token {token_label!r}, key {key_label!r}"
        self._lock = threading.Lock()
        try:
            lib = pkcs11.lib(module)
            token = lib.get_token(token_label=token_label)
            try:
                self._session = token.open(user_pin=pin, rw=True)
            except pkcs11.UserAlreadyLoggedIn:  # login is per process: another session of ours did it
                self._session = token.open(rw=True)
        except (OSError, RuntimeError) as exc:  # RuntimeError is PKCS11Error's base
            raise KeyUnavailable(f"cannot open the {self.description} with module {module}: "
                                 f"{type(exc).__name__}") from None
        self._key = self._find_or_create(key_label, directory)

    def _find_or_create(self, label: str, directory: str | Path | None):
        p = self._pkcs11
        try:
            return self._session.get_key(object_class=p.ObjectClass.SECRET_KEY,
                                         key_type=p.KeyType.AES, label=label)
        except p.NoSuchKey:
            pass
        except p.MultipleObjectsReturned:
            raise KeyUnavailable(f"more than one AES key labelled {label!r} in the token") from None
        if directory is not None and (Path(directory) / KEY_STORE_FILE).exists():
            raise KeyUnavailable(f"the {self.description} has no such key, but the key store in "
                                 f"{directory} was wrapped by one: restore it (a new one could not "
                                 "unwrap any data key)")
        return self._session.generate_key(
            p.KeyType.AES, 256, label=label, store=True,
            template={p.Attribute.SENSITIVE: True, p.Attribute.EXTRACTABLE: False})

    def wrap(self, data_key: bytes) -> bytes:
        iv = os.urandom(_IV)
        with self._lock:
            try:
                return iv + self._key.encrypt(data_key, mechanism=self._pkcs11.Mechanism.AES_GCM,
                                              mechanism_param=self._gcm(iv))
            except RuntimeError as exc:
                raise KeyUnavailable(f"the {self.description} could not wrap a key: "
                                     f"{type(exc).__name__}") from None

    def unwrap(self, wrapped: bytes) -> bytes:
        if len(wrapped) <= _IV + 16:
            raise KeyUnavailable("a wrapped key is too short")
        with self._lock:
            try:
                return bytes(self._key.decrypt(wrapped[_IV:], mechanism=self._pkcs11.Mechanism.AES_GCM,
                                               mechanism_param=self._gcm(wrapped[:_IV])))
            except RuntimeError as exc:  # a failed tag check surfaces as a PKCS#11 error
                raise KeyUnavailable(f"cannot unwrap a data key with the {self.description}: "
                                     f"{type(exc).__name__} (wrong token or key?)") from None

    def _gcm(self, iv: bytes):
        from pkcs11.mechanisms import GCMParams

        return GCMParams(iv, _AAD, 128)

    def close(self) -> None:
        with self._lock:
            self._session.close()

    def __repr__(self) -> str:  # never the PIN
        return f"Pkcs11KeyProvider({self.description})"
