"""Data keys, the key-encryption key, and crypto-shredding.

Why it exists: LMDB never wipes freed pages (a deleted body stays in ``data.mdb``, its copies and backups), so
smsroute erases by destroying keys. Data keys therefore live **outside** the LMDB data file, in one key store
file per :class:`KeyRing` directory (``keys.store``), each data key wrapped by a key-encryption key (KEK) that a
:class:`KeyProvider` holds: :class:`LocalKeyProvider` (a ``master.key`` file, 0600) by default, or a PKCS#11
HSM (``storage.hsm``), chosen by :func:`open_key_provider` from ``[keys] provider``. Per-account keys live
beside the ring (``storage.account_keys``), wrapped by the same KEK.

Key kinds in one ring:

* **window keys**: one per body time window; a body's blob names its window id (``storage.crypto`` key id).
  :meth:`KeyRing.shred_window` destroys one. A window's length and the longest life of a body sealed in it
  (its *TTL*, ``storage.bodies``) come from the **era** it belongs to: the body store sets them at each
  start (:meth:`KeyRing.use_body_windows`: windows a quarter of the TTL long, at most ``window_seconds``,
  hourly by default, at least a second), so a window's key can die once every body in it has expired
  however short the TTL. A start with another TTL begins a new era at that instant; the ring records every
  era that still has a live window (``eras``: first window id, start, length, TTL), so window ids only grow,
  and bodies sealed under an older era keep their window's start and TTL until their key is shredded. A
  key store written before eras (version 1) is one era from the epoch: window ``int(t // window_seconds)``,
  taking the TTL of its first start with eras.
* **named keys**: persistent keys per store category (``store_sealer("ledger")``), per legal hold
  (``named_sealer("hold:...")``, shredded with :meth:`KeyRing.shred_named` when the hold ends) and the
  secrets that key HMACs (:meth:`KeyRing.secret`).

Durability contract: every change (a new key, a shredded key) rewrites ``keys.store`` atomically (write a temp
file, fsync, rename over, fsync the directory) before the method returns, so after a crash the file is either
the old or the new version, never a mix. A key is usable only after it is durable. A change whose save fails
is undone in memory too (:meth:`KeyRing._changing`): before, a secret whose save failed on a full disk was
kept in memory and handed out by the next :meth:`KeyRing.secret` call (HMAC tokens under a secret a restart
would not have), and a failed shred was never retried. No space left on the key directory's device is
``StoreFull`` naming the ``keys`` store (:func:`atomic_write`; counted, logged by the caller: a POP's commit,
the sweeper, a worker starting an account's session), not a bare ``OSError``.

Shredding on a full disk: a shred must not wait for space (a body would outlive its 24 h, a debugging
window's copy its end). So (1) the ring keeps a **reserve file** beside the store (``keys.store.reserve``,
:data:`RESERVE_REWRITES` slices each as large as the store plus :data:`RESERVE_MARGIN`, made whole again
whenever a save succeeds and at every body sweep tick, as far as space allows): a shred whose save fails
for lack of space gives up one slice (truncates the file) and saves again into the blocks it freed, slice
after slice - the usual atomic rewrite, no in-place edit, so a crash still leaves the old file or the new
one. A shred frees the old store's blocks, so on an otherwise idle full disk the reserve is whole again at
once; on a disk another writer keeps filling (it takes what a shred leaves free) one outage gets
``RESERVE_REWRITES`` durable shreds (fewer if it also takes a slice's blocks before the rewrite does),
plus as many again each time space returns for one sweep tick; and
(2) if that fails too (the reserve used up, or something else took the freed blocks first) the key is forgotten in
memory at once - nothing in this process unseals under it again - and the save is retried by every later
change, every later shred call and every body sweep (each tick, :meth:`save_unsaved_shreds`), with
``StoreFull`` raised meanwhile so the caller alarms. The bound: in case (2) a copy of the key stays in
``keys.store`` until a save succeeds, and a restart before that reloads it (a window's key is shredded
again by the first body sweep, a hold's by the start of its holds store, which finds the hold ended on
disk: ``storage.holds``). An LMDB delete is no help here: the keys are outside LMDB on purpose, and
LMDB itself needs free pages to commit a delete.

Not guaranteed: a wrapped key removed from ``keys.store`` may survive in freed filesystem blocks or an old
backup of the key directory; it is useless without the KEK, so an operator who needs stronger guarantees
rotates the KEK (:meth:`KeyRing.rewrap`) and destroys the old one.

Thread-safety: one lock guards every change; :meth:`KeyRing.body_sealer` for an existing window is a dict
lookup without the lock.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from engine.errors import CorruptRecord, KeyUnavailable, StoreFull
from storage.crypto import KEY_BYTES, Sealer
from storage.full import is_full_disk, store_full

__all__ = ["KEY_STORE", "KEY_STORE_FILE", "MASTER_KEY_FILE", "KeyProvider", "KeyRing", "LocalKeyProvider",
           "atomic_write", "fsync_dir", "open_key_provider"]

MASTER_KEY_FILE = "master.key"
KEY_STORE_FILE = "keys.store"
RESERVE_FILE = KEY_STORE_FILE + ".reserve"
RESERVE_MARGIN = 16 << 10  # a slice of the reserve beyond the store's size: a shred's rewrite never grows it
RESERVE_REWRITES = 4  # slices in the reserve: shreds saved in one outage even if others take what is freed
KEY_STORE = "keys"  # the key directory, as store_full refusals and smsroute_store_full_refusals_total name it
_STORE_VERSION = 2  # 1: no eras (one era of window_seconds from the epoch); still read
_KEK_AAD = b"smsroute-kek-v1"
_NAMED_ID_BASE = 0x8000_0000  # named keys get ids with the top bit set; window ids stay below
_MAX_TOMBSTONES = 4096


@dataclass(frozen=True, slots=True)
class _Era:
    """Body windows of one length from ``start``: window ``first_id + (t - start) // length``."""

    first_id: int
    start: float
    length: int
    ttl: int | None  # the longest life of a body sealed in its windows; None: a version-1 ring, not yet set


@runtime_checkable
class KeyProvider(Protocol):
    """The key-encryption key. Implementations may call out to a KMS or vault."""

    def wrap(self, data_key: bytes) -> bytes:
        """Encrypt a data key for storage in the key store."""
        ...

    def unwrap(self, wrapped: bytes) -> bytes:
        """Recover a data key; raise ``KeyUnavailable`` if it cannot (wrong master key, vault down)."""
        ...


class LocalKeyProvider:
    """The embedded KEK: 32 random bytes in ``<directory>/master.key``, created 0600 on first start."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / MASTER_KEY_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._aead = AESGCM(self._load_or_create())

    def _load_or_create(self) -> bytes:
        if not self.path.exists() and (self.path.parent / KEY_STORE_FILE).exists():
            raise KeyUnavailable(
                f"master key {self.path} is missing but the key store next to it exists: restore the "
                "master key (a new one could not unwrap any data key)"
            )
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            key = self.path.read_bytes()
            if len(key) != KEY_BYTES:
                raise KeyUnavailable(
                    f"master key file {self.path} holds {len(key)} bytes, expected {KEY_BYTES}"
                ) from None
            return key
        key = os.urandom(KEY_BYTES)
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self.path.parent)
        return key

    def wrap(self, data_key: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, data_key, _KEK_AAD)

    def unwrap(self, wrapped: bytes) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:12], wrapped[12:], _KEK_AAD)
        except (InvalidTag, ValueError):
            raise KeyUnavailable(
                f"cannot unwrap a data key with the master key {self.path}: wrong or replaced "
                "master key"
            ) from None

    def __repr__(self) -> str:
        return f"LocalKeyProvider({str(self.path)!r})"


def open_key_provider(settings: object, directory: str | Path) -> KeyProvider:
    """The KEK that ``[keys] provider`` names (``settings``: an ``engine.config.KeySettings``): the local
    master-key file in ``directory`` (the embedded default) or a PKCS#11 token (``storage.hsm``)."""
    if getattr(settings, "provider", "local") == "pkcs11":
        from storage.hsm import Pkcs11KeyProvider, read_pin

        pin = read_pin(settings.pkcs11_pin_env, settings.pkcs11_pin_file)
        return Pkcs11KeyProvider(settings.pkcs11_module, settings.pkcs11_token_label, pin,
                                 key_label=settings.pkcs11_key_label, directory=directory)
    return LocalKeyProvider(directory)


class KeyRing:
    """Data keys outside LMDB, in ``<directory>/keys.store``, wrapped by ``provider``."""

    def __init__(self, directory: str | Path, provider: KeyProvider, *, window_seconds: int = 3600,
                 clock: Callable[[], float] = time.time) -> None:
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = self.directory / KEY_STORE_FILE
        self._window_cap = window_seconds
        self._eras = [_Era(0, 0.0, window_seconds, None)]  # oldest first; the last one is in force
        self._from_version_1 = False  # loaded a key store written before eras (its TTL is settled here)
        self._saved_with_eras = False  # the file on disk records the eras (version 2)
        self._provider = provider
        self._clock = clock
        self._lock = threading.RLock()
        self._wrapped_windows: dict[int, bytes] = {}
        self._wrapped_named: dict[str, tuple[int, bytes]] = {}
        self._windows: dict[int, Sealer] = {}
        self._named: dict[str, Sealer] = {}
        self._tombstones: list[int] = []  # shredded window ids, newest last
        self._tombstone_floor = -1  # every window id <= this without a key counts as shredded
        self._next_named_id = _NAMED_ID_BASE
        self.ring_id = b""  # random id of this key store; stores record it to detect a swapped store
        self._kek_check = b""  # the ring id wrapped by the KEK: proves the provider at load time
        self._unsaved_shreds = False  # a shred forgotten in memory, not yet saved (full disk): retried
        self._store_bytes = 0  # the size of keys.store as last read or written (sizes the reserve)
        self.reserve_path = self.directory / RESERVE_FILE
        self._load()

    # --- public API -------------------------------------------------------------------------------

    def store_sealer(self, name: str) -> Sealer:
        """The persistent key of a store category ("records", "accounts", ...), created on first use."""
        return self.named_sealer(name)

    def named_sealer(self, name: str, *, create: bool = True) -> Sealer:
        """A persistent named key (store categories, holds); ``KeyUnavailable`` if absent and not
        ``create``."""
        sealer = self._named.get(name)
        if sealer is not None:
            return sealer
        with self._lock:
            if name in self._named:
                return self._named[name]
            if not create:
                raise KeyUnavailable(f"no data key named {name!r} (shredded or never created)")
            key, key_id = os.urandom(KEY_BYTES), self._next_named_id
            with self._changing():
                self._wrapped_named[name] = (key_id, self._provider.wrap(key))
                self._next_named_id += 1
            self._named[name] = sealer = Sealer(key, key_id)
            return sealer

    def has_named(self, name: str) -> bool:
        """Whether the ring holds the named key ``name`` (creates nothing)."""
        return name in self._wrapped_named

    def secret(self, name: str) -> bytes:
        """A persistent 32-byte secret that keys HMACs (account pseudonyms, request hashes): kept in
        the ring as the named key ``secret:<name>``, so it is wrapped by the KEK like every data key."""
        key_name = f"secret:{name}"
        with self._lock:
            if key_name not in self._wrapped_named:
                self.named_sealer(key_name)
            return self._provider.unwrap(self._wrapped_named[key_name][1])

    def shred_named(self, name: str) -> None:
        """Destroy a named key (a hold key when its hold ends). Idempotent. On a full disk: see
        :meth:`_shredding` (forgotten at once; ``StoreFull`` until it is saved)."""
        with self._lock:
            if name not in self._wrapped_named:
                self._save_unsaved_locked()
                return
            with self._shredding():
                del self._wrapped_named[name]
                self._named.pop(name, None)

    def named_keys(self) -> list[str]:
        return sorted(self._wrapped_named)

    @property
    def window_seconds(self) -> int:
        """The length of the windows new bodies are sealed in now."""
        return self._eras[-1].length

    def use_body_windows(self, max_ttl_seconds: int, *, latest_expiry: float | None = None) -> None:
        """Seal new bodies in windows fit for bodies living at most ``max_ttl_seconds`` from their window's
        start: a quarter of it long (at most ``window_seconds``, at least a second). If the era in force
        has another length or TTL, a new one begins now (durably); the windows of older eras keep theirs.

        ``latest_expiry``: the latest body expiry in the caller's store. A version-1 ring did not record
        its TTL, so its windows get one long enough for every body it sealed (at most a day)."""
        if max_ttl_seconds <= 0:
            raise ValueError("max_ttl_seconds must be positive")
        length = max(1, min(self._window_cap, max_ttl_seconds // 4))
        with self._lock, self._changing(save=False):
            before = list(self._eras)
            if self._from_version_1:
                self._eras[0] = self._legacy_era(self._eras[0], max_ttl_seconds, latest_expiry)
            last = self._eras[-1]
            if last.ttl is None and last.length == length:  # a new ring: its first era
                self._eras[-1] = last = replace(last, ttl=max_ttl_seconds)
            if (last.length, last.ttl) != (length, max_ttl_seconds):
                now = self._clock()
                first = max([self.body_window(now), self._tombstone_floor, *self._tombstones,
                             *self._wrapped_windows]) + 1
                self._eras.append(_Era(first, now, length, max_ttl_seconds))
                for window in [w for w in self._wrapped_windows if self.window_start(w) >= now]:
                    self._drop_window(window)  # made ahead of time for the old era: holds no body
                self._eras = [e for i, e in enumerate(self._eras) if self._era_has_windows(i)]
            if self._eras != before or not self._saved_with_eras:
                self._save()  # (each POP's body store calls this at start: one write, not one each)

    def _legacy_era(self, era: _Era, max_ttl: int, latest_expiry: float | None) -> _Era:
        """The epoch era of a version-1 ring, with a TTL that keeps each of its bodies to its expiry."""
        if era.first_id != 0 or era.start != 0.0:
            return era  # no window of it is left: it was dropped
        ttl = max_ttl if era.ttl is None else era.ttl
        end = self._eras[1].first_id if len(self._eras) > 1 else _NAMED_ID_BASE
        live = [w for w in self._wrapped_windows if w < end]
        if latest_expiry is not None and live:
            oldest_start = min(live) * era.length
            ttl = max(ttl, min(86400, math.ceil(latest_expiry - oldest_start)))
        return replace(era, ttl=ttl)

    def _era_has_windows(self, index: int) -> bool:
        if index == len(self._eras) - 1:
            return True
        low, high = self._eras[index].first_id, self._eras[index + 1].first_id
        return any(low <= w < high for w in self._wrapped_windows)

    def _era_of_window(self, window_id: int) -> tuple[_Era, _Era | None]:
        """The era of a window id, and the one after it (None for the era in force)."""
        eras = self._eras
        for i in range(len(eras) - 1, 0, -1):
            if eras[i].first_id <= window_id:
                return eras[i], eras[i + 1] if i + 1 < len(eras) else None
        return eras[0], eras[1] if len(eras) > 1 else None

    def body_window(self, at: float) -> int:
        """The window id of a body written at ``at`` (seconds since the epoch)."""
        eras = self._eras
        era = eras[-1]
        if at < era.start:
            era = next((e for e in reversed(eras) if e.start <= at), eras[0])
        return era.first_id + int((at - era.start) // era.length)

    def window_start(self, window_id: int) -> float:
        """The first instant of window ``window_id``."""
        era, _ = self._era_of_window(window_id)
        return era.start + (window_id - era.first_id) * era.length

    def window_end(self, window_id: int) -> float:
        """The first instant after window ``window_id`` (an era's last window ends where the next begins)."""
        era, following = self._era_of_window(window_id)
        end = era.start + (window_id - era.first_id + 1) * era.length
        return end if following is None else min(end, following.start)

    def window_horizon(self, window_id: int) -> float:
        """The window's start plus its era's TTL: no body sealed in it lives past this, and its key is
        shredded at the first sweep after it."""
        era, _ = self._era_of_window(window_id)
        ttl = era.ttl if era.ttl is not None else 86400
        return era.start + (window_id - era.first_id) * era.length + ttl

    def body_sealer(self, window_id: int, *, create: bool = True) -> Sealer:
        """The key of a body window, created on first use (if ``create``).

        Raises ``KeyUnavailable`` if the window was shredded, or if it is unknown and ``create`` is false
        (a reader asking for a key the store never had: a lost or replaced key store)."""
        sealer = self._windows.get(window_id)
        if sealer is not None:
            return sealer
        with self._lock:
            sealer = self._windows.get(window_id)
            if sealer is not None:
                return sealer
            if self.is_shredded(window_id):
                raise KeyUnavailable(f"the key of body window {window_id} was shredded")
            if not create:
                raise KeyUnavailable(
                    f"no key for body window {window_id} in {self.path}: key store lost or replaced"
                )
            key = os.urandom(KEY_BYTES)
            with self._changing():  # durable before anything is sealed under it (else StoreFull)
                self._wrapped_windows[window_id] = self._provider.wrap(key)
            self._windows[window_id] = sealer = Sealer(key, window_id)
            return sealer

    def is_shredded(self, window_id: int) -> bool:
        if window_id in self._windows:
            return False
        return window_id <= self._tombstone_floor or window_id in self._tombstones

    def shred_window(self, window_id: int) -> None:
        """Destroy a window key: every body sealed under it becomes unreadable everywhere. Idempotent."""
        with self._lock:
            if window_id not in self._wrapped_windows and self.is_shredded(window_id):
                self._save_unsaved_locked()  # (the sweeper's next call retries a save that failed)
                return
            with self._shredding():
                self._drop_window(window_id)

    def _drop_window(self, window_id: int) -> None:
        """Forget a window key and tombstone it (the caller saves)."""
        self._wrapped_windows.pop(window_id, None)
        self._tombstones.append(window_id)
        if len(self._tombstones) > _MAX_TOMBSTONES:
            self._tombstones.sort()
            dropped = self._tombstones[: len(self._tombstones) - _MAX_TOMBSTONES]
            del self._tombstones[: len(dropped)]
            self._tombstone_floor = max(self._tombstone_floor, dropped[-1])
        self._windows.pop(window_id, None)

    def current_window(self) -> int:
        """The window id of "now" by the ring's clock."""
        return self.body_window(self._clock())

    def live_windows(self) -> list[int]:
        return sorted(self._wrapped_windows)

    def rewrap(self, provider: KeyProvider) -> None:
        """KEK rotation: re-wrap every data key under ``provider`` and use it from now on."""
        with self._lock, self._changing():
            for wid, sealer_key in self._raw_keys_windows().items():
                self._wrapped_windows[wid] = provider.wrap(sealer_key)
            for name, (key_id, key) in self._raw_keys_named().items():
                self._wrapped_named[name] = (key_id, provider.wrap(key))
            self._kek_check = provider.wrap(self.ring_id + bytes(16))
            self._provider = provider

    # --- persistence ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _changing(self, *, save: bool = True) -> Iterator[None]:
        """The block changes the ring; it is saved at the end (``save``; else the block saves itself), and
        if the block or the save fails, every change it made is undone in memory as well, so the ring
        never uses or hands out a key that is not on disk. Hold the lock. Copies a few dicts: key
        changes are rare (a window an hour, a hold, a start), never per message."""
        before = (list(self._eras), dict(self._wrapped_windows), dict(self._wrapped_named),
                  dict(self._windows), dict(self._named), list(self._tombstones), self._tombstone_floor,
                  self._next_named_id, self._kek_check, self._provider)
        try:
            yield
            if save:
                self._save()
        except BaseException:
            (self._eras, self._wrapped_windows, self._wrapped_named, self._windows, self._named,
             self._tombstones, self._tombstone_floor, self._next_named_id, self._kek_check,
             self._provider) = before
            raise

    @contextlib.contextmanager
    def _shredding(self) -> Iterator[None]:
        """The block forgets a key; it is saved at the end. A save refused for lack of space is tried again
        in the space of the reserve file (deleted for it); if that fails too, the key stays forgotten in
        memory (never unsealed under again) and ``StoreFull`` is raised: every later save writes it, and
        :meth:`save_unsaved_shreds` retries. Hold the lock."""
        with self._changing(save=False):
            yield
        try:
            self._save_in_reserve()
        except StoreFull:
            self._unsaved_shreds = True
            raise

    def save_unsaved_shreds(self) -> None:
        """The body sweep's tick: save a shred forgotten in memory but not saved yet (full disk;
        ``StoreFull`` if it still cannot be, the reserve given up first slice by slice), then make the
        reserve whole again if space allows (a shred in an outage used part of it, or another writer took
        the blocks before it could be made again). Costs a ``stat`` when there is nothing to do."""
        with self._lock:
            self._save_unsaved_locked()
            self._keep_reserve()

    def _save_unsaved_locked(self) -> None:
        if self._unsaved_shreds:
            self._save_in_reserve()

    def _save_in_reserve(self) -> None:
        """Save; while there is no space, give up one slice of the reserve and try again (``StoreFull``
        once it is all given up)."""
        while True:
            try:
                self._save()
                return
            except StoreFull:
                if not self._reserve_slice_given_up():
                    raise

    def _reserve_slice(self) -> int:
        return self._store_bytes + RESERVE_MARGIN

    def _reserve_slice_given_up(self) -> bool:
        """Shrink the reserve file by one slice (delete it at the last), so its blocks take the rewrite of
        a shred; whether there was any. A slice at a time: what the rewrite does not use may be taken by
        another writer at once, and the slices left still cover the next shreds of the outage."""
        try:
            size = self.reserve_path.stat().st_size
        except FileNotFoundError:
            return False
        left = size - self._reserve_slice()
        if left <= 0:
            self.reserve_path.unlink()
            fsync_dir(self.directory)
            return True
        fd = os.open(self.reserve_path, os.O_WRONLY)
        try:
            os.ftruncate(fd, left)  # frees the blocks past ``left``
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def _keep_reserve(self) -> None:
        """Make the reserve file (:data:`RESERVE_REWRITES` slices of the store's size +
        :data:`RESERVE_MARGIN`, really allocated) whole if it is missing or too small. Best effort:
        without space it keeps what it has (the slices left), and a later save or sweep tick tries again."""
        size = RESERVE_REWRITES * self._reserve_slice()
        try:
            had = self.reserve_path.stat().st_size
        except FileNotFoundError:
            had = 0
        if had >= size:
            return
        try:
            fd = os.open(self.reserve_path, os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError:
            return
        try:
            os.posix_fallocate(fd, 0, size)  # blocks, not a sparse file: they are what is given up
            os.fsync(fd)
        except OSError:  # (what a failed allocation took past the slices kept is given back)
            with contextlib.suppress(OSError):
                os.ftruncate(fd, had)
            if had == 0:
                with contextlib.suppress(OSError):
                    self.reserve_path.unlink()
        finally:
            os.close(fd)

    def _raw_keys_windows(self) -> dict[int, bytes]:
        return {w: self._provider.unwrap(b) for w, b in self._wrapped_windows.items()}

    def _raw_keys_named(self) -> dict[str, tuple[int, bytes]]:
        return {n: (i, self._provider.unwrap(b)) for n, (i, b) in self._wrapped_named.items()}

    def _load(self) -> None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            self.ring_id = os.urandom(16)
            self._kek_check = self._provider.wrap(self.ring_id + bytes(16))
            self._save()
            return
        try:
            doc = msgpack.unpackb(raw, raw=False, strict_map_key=False)
            if doc["version"] not in (1, _STORE_VERSION):
                raise ValueError(f"version {doc['version']}")
            self._from_version_1 = doc["version"] == 1
            self._saved_with_eras = doc["version"] >= 2
            if doc["version"] >= 2:
                self._eras = [_Era(int(f), float(s), int(n), None if t is None else int(t))
                              for f, s, n, t in doc["eras"]]
            self.ring_id = doc["ring_id"]
            self._wrapped_windows = {int(k): v for k, v in doc["windows"].items()}
            self._wrapped_named = {k: (int(v[0]), v[1]) for k, v in doc["named"].items()}
            self._tombstones = list(doc["tombstones"])
            self._tombstone_floor = int(doc["tombstone_floor"])
            self._next_named_id = int(doc["next_named_id"])
            self._kek_check = doc["kek_check"]
        except Exception as exc:  # msgpack and KeyError/TypeError/ValueError alike
            raise CorruptRecord(f"key store {self.path} is unreadable: {exc!r}") from None
        if self._provider.unwrap(self._kek_check) != self.ring_id + bytes(16):
            raise KeyUnavailable(f"the key provider does not match the key store {self.path}")
        self._windows = {w: Sealer(k, w) for w, k in self._raw_keys_windows().items()}
        self._named = {n: Sealer(k, i) for n, (i, k) in self._raw_keys_named().items()}
        self._store_bytes = len(raw)
        self._keep_reserve()  # (a store written before the reserve: made at its first start)

    def _save(self) -> None:
        doc = {
            "version": _STORE_VERSION,
            "ring_id": self.ring_id,
            "windows": self._wrapped_windows,
            "named": {k: list(v) for k, v in self._wrapped_named.items()},
            "tombstones": self._tombstones,
            "tombstone_floor": self._tombstone_floor,
            "next_named_id": self._next_named_id,
            "kek_check": self._kek_check,
            "eras": [[e.first_id, e.start, e.length, e.ttl] for e in self._eras],
        }
        data = msgpack.packb(doc)
        atomic_write(self.path, data)
        self._saved_with_eras = True
        self._unsaved_shreds = False
        self._store_bytes = len(data)
        self._keep_reserve()

    def __repr__(self) -> str:
        return f"KeyRing({str(self.directory)!r}, windows={len(self._wrapped_windows)})"


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: a crash leaves the old file or the new one, whole. No space left on
    its device is ``StoreFull`` for the ``keys`` store (counted, not logged: the caller logs its own way),
    with the partly written temp file removed; ``path`` is untouched."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        if not is_full_disk(exc, path.parent):
            raise
        with contextlib.suppress(OSError):
            tmp.unlink()  # (a partial file of wrapped keys, taking the space that is short)
        raise store_full(KEY_STORE, logged=False) from None


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
