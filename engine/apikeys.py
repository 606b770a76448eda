"""API keys: 256 random bits with a visible prefix, shown once, stored only as a SHA-256 digest.

A slow KDF adds nothing for 256-bit random keys and would make every request cost ~30 ms (a denial-of-service
lever), so keys are looked up by SHA-256 digest under a unique index and compared with
``hmac.compare_digest``. Only ``hint`` (prefix and last four characters) is ever displayed again.

>>> key = new_api_key()
>>> key.startswith("sk_live_") and len(digest(key)) == 32
True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "sk_live_"


def new_api_key() -> str:
    """A new key: ``sk_live_`` + 43 url-safe base64 characters (256 bits)."""
    raw = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return PREFIX + raw


def digest(api_key: str) -> bytes:
    """The stored form of a key: SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).digest()


class PresentedKey:
    """An API key as a request presented it, hashed once. The customer API hashes each request's key
    once into one of these and hands it on - to resolve the account, as the rate limiter's key, to the
    engine's submit - where each of them used to hash the key again (~8,500 CPU instructions a hash).
    Made only from the key (the constructor hashes it): no client ever sends a digest. The key itself
    is not kept, and neither is shown by ``repr``.

    >>> PresentedKey("sk_live_x").digest == digest("sk_live_x")
    True
    """

    __slots__ = ("digest",)

    def __init__(self, api_key: str) -> None:
        self.digest = digest(api_key)

    def __repr__(self) -> str:
        return "PresentedKey(…)"


def digest_of(api_key: object) -> bytes | None:
    """The digest of a key (a ``str``) or of a :class:`PresentedKey` (hashed already); None for
    anything else (the caller refuses it)."""
    if type(api_key) is PresentedKey:
        return api_key.digest
    if isinstance(api_key, str):
        return digest(api_key)
    return None


def hint(api_key: str) -> str:
    """What may be displayed after creation: prefix and the last four characters."""
    return f"{PREFIX}…{api_key[-4:]}"


def matches(stored_digests: list[bytes], presented_digest: bytes) -> bool:
    """Constant-time check of a presented digest against an account's stored digests."""
    found = False
    for stored in stored_digests:
        found |= hmac.compare_digest(stored, presented_digest)
    return found
