"""``[keys]``: where the key-encryption key (KEK) that wraps every data key lives, and where the wrapped
data keys are kept (``storage.keys``, ``storage.hsm``).

``provider = "local"`` (the embedded default) is a 32-byte ``master.key`` file (0600) in ``dir``;
``"pkcs11"`` is an AES key inside an HSM token, reached through its PKCS#11 module, with the user PIN from
an environment variable or a file, never from the config. ``dir`` defaults to ``<data_dir>/keys``; on
another volume than the data directory, a copy, backup or disk image of the data holds only ciphertext,
and a shredded key cannot come back with a restored data backup.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from engine.errors import ConfigError
from engine.typed_tables import Range, typed_table


@dataclass(frozen=True)
class KeySettings:
    """``[keys]``: where the key-encryption key lives and where the wrapped data keys are kept."""

    provider: str = "local"  # "local": a master.key file in ``dir`` | "pkcs11": an HSM token
    dir: str = ""  # "" = <data_dir>/keys; a relative path is relative to the data directory
    # unwrapped per-account keys kept in memory (LRU)
    account_key_cache: Annotated[int, Range(1, 1_000_000)] = 10000
    pkcs11_module: str = ""  # path of the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so
    pkcs11_token_label: str = ""
    pkcs11_key_label: str = "smsroute-kek"  # the AES key object in the token (made on a first start)
    pkcs11_pin_env: str = ""  # name of the environment variable that holds the user PIN, or
    pkcs11_pin_file: str = ""  # a file that holds it (exactly one of the two)


def keys_from_table(table: Any) -> KeySettings:
    """``[keys]``, typed, with a PKCS#11 provider's module, labels and exactly one way to its PIN."""
    keys = typed_table(KeySettings, table, "keys")
    _check_keys(keys)
    return keys


def _check_keys(keys: KeySettings) -> None:
    if keys.provider not in ("local", "pkcs11"):
        raise ConfigError("config: [keys] provider must be 'local' or 'pkcs11'")
    if keys.provider == "pkcs11":
        if not (keys.pkcs11_module and keys.pkcs11_token_label and keys.pkcs11_key_label):
            raise ConfigError("config: [keys] provider = 'pkcs11' needs pkcs11_module, "
                              "pkcs11_token_label and pkcs11_key_label")
        if bool(keys.pkcs11_pin_env) == bool(keys.pkcs11_pin_file):
            raise ConfigError("config: [keys] provider = 'pkcs11' needs exactly one of "
                              "pkcs11_pin_env and pkcs11_pin_file (the PIN is never in the config)")
