"""The ledger's hash chain: tamper evidence over the sealed entries.

Layout: every ledger entry is stored under its sequence number as ``previous link (32 bytes) | sealed
entry``. An entry's *link* is::

    BLAKE2b-256(key = chain key, sequence number (8 bytes, big-endian) | stored value)

so each entry carries the link of the one before it (the first one carries 32 zero bytes), and the link of
the newest entry — the *head* — is kept in the ``ledger_meta`` database, written in the same transaction.
That costs one keyed hash per written entry; a whole batch of one account's debits is one entry.

Why over the *sealed* bytes: erasure never rewrites a row (it destroys the account's ledger key, so the
identifiers sealed under it stop opening; ``storage.ledger``). The bytes the chain covers never change, so it
verifies before and after any number of erasures, with no re-anchoring and no checkpoint to trust.

Why keyed (the chain key is derived from the key ring's pseudonym secret, wrapped by the KEK): whoever can
write the data files but does not hold the key ring can delete, reorder or replace entries, but cannot
compute the links that would hide it. With the store key, :func:`verify` also opens every entry, so an
edited entry is named by its failed authentication as well as by the broken link after it.

Retention: the sweep deletes the oldest entries (past 7 years) and records an *anchor* in the same
transaction — the sequence number of the first entry kept, the link it must follow and when the swept
entries ended, under a keyed MAC — and verification starts there.

Not proven by the chain alone: cutting off the newest entries *and* rewriting the head to the link the new
last entry's successor recorded. That is only visible against a head recorded elsewhere: ``smsroute ledger
verify`` and ``GET /v1/ledger/verify`` print the head, and ``/metrics`` exports its sequence number
(``smsroute_billing_chain_head_seq``), so a Prometheus history keeps it off the host. (Balances would also stop
matching their entries, which reconciliation reports, unless the balance rows were rewritten as well.)
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import lmdb

__all__ = ["GENESIS", "LINK_BYTES", "Anchor", "Chain", "ChainProblem", "ChainReport"]

LINK_BYTES = 32
GENESIS = bytes(LINK_BYTES)  # what the first entry of a ledger carries as its previous link
_HEAD, _ANCHOR = b"head", b"anchor"
_SEQ_LINK = struct.Struct(">Q32s")
_ANCHOR_ROW = struct.Struct(">Q32sd32s")  # first seq kept, its previous link, swept until, MAC


@dataclass(frozen=True)
class Anchor:
    """Where the chain starts after a sweep: ``seq`` must carry ``link`` as its previous link."""

    seq: int
    link: bytes
    swept_until: float = 0.0  # the newest time among the swept entries (0: nothing swept yet)


@dataclass(frozen=True)
class ChainProblem:
    """One broken place: ``kind`` is ``missing`` (entries ``seq``..``last`` are gone), ``broken_link``
    (entry ``seq`` does not follow the entry before it: one of the two was changed), ``unreadable`` (entry
    ``seq`` does not authenticate under the ledger key: its sealed bytes were changed), ``head`` (the
    newest entry is not the recorded head: entries were cut off, added, or the newest one changed) or
    ``anchor`` (the retention anchor was tampered with)."""

    seq: int
    kind: str
    detail: str
    last: int = 0  # for ``missing``: the last absent sequence number

    def as_dict(self) -> dict:
        out = {"seq": self.seq, "kind": self.kind, "detail": self.detail}
        if self.kind == "missing":
            out["last_seq"] = self.last
        return out


@dataclass
class ChainReport:
    """The outcome of walking the chain: ``ok`` when nothing is broken."""

    entries: int = 0
    first_seq: int = 0
    head_seq: int = 0
    head_link: str = ""
    anchor_seq: int = 1
    problems: list[ChainProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_broken(self) -> int | None:
        """The sequence number of the first broken place (None when intact)."""
        return min((p.seq for p in self.problems), default=None)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "entries": self.entries, "first_seq": self.first_seq,
                "head": {"seq": self.head_seq, "link": self.head_link}, "anchor_seq": self.anchor_seq,
                "first_broken_seq": self.first_broken,
                "problems": [p.as_dict() for p in self.problems]}


class Chain:
    """The chain key and the ``ledger_meta`` rows (head, anchor) of one ledger environment."""

    def __init__(self, env: lmdb.Environment, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a chain key is at least 16 bytes")
        self._base = hashlib.blake2b(key=key, digest_size=LINK_BYTES)  # copied per link
        self._mac_key = hashlib.blake2b(b"anchor", key=key, digest_size=32).digest()
        self._meta = env.open_db(b"ledger_meta")

    def link(self, seq: int, value: bytes) -> bytes:
        """The link of the entry stored as ``value`` under ``seq``."""
        h = self._base.copy()
        h.update(seq.to_bytes(8, "big"))
        h.update(value)
        return h.digest()

    # --- head and anchor (written inside the ledger's own transactions) ---------------------------

    def head(self, txn: lmdb.Transaction) -> tuple[int, bytes]:
        """``(seq, link)`` of the newest entry; ``(anchor seq - 1, anchor link)`` for an empty chain."""
        raw = txn.get(_HEAD, db=self._meta)
        if raw is not None:
            return _SEQ_LINK.unpack(raw)
        anchor = self.anchor(txn)
        return anchor.seq - 1, anchor.link

    def set_head(self, txn: lmdb.Transaction, seq: int, link: bytes) -> None:
        txn.put(_HEAD, _SEQ_LINK.pack(seq, link), db=self._meta)

    def anchor(self, txn: lmdb.Transaction) -> Anchor:
        raw = txn.get(_ANCHOR, db=self._meta)
        if raw is None:
            return Anchor(1, GENESIS)
        seq, link, until, _mac = _ANCHOR_ROW.unpack(raw)
        return Anchor(seq, link, until)

    def set_anchor(self, txn: lmdb.Transaction, anchor: Anchor) -> None:
        body = _ANCHOR_ROW.pack(anchor.seq, anchor.link, anchor.swept_until, bytes(32))[:-32]
        txn.put(_ANCHOR, body + self._anchor_mac(body), db=self._meta)

    def _anchor_mac(self, body: bytes) -> bytes:
        return hashlib.blake2b(body, key=self._mac_key, digest_size=32).digest()

    def _anchor_problem(self, txn: lmdb.Transaction) -> ChainProblem | None:
        raw = txn.get(_ANCHOR, db=self._meta)
        if raw is None:
            return None
        if len(raw) != _ANCHOR_ROW.size or not hmac.compare_digest(
                self._anchor_mac(bytes(raw[:-32])), bytes(raw[-32:])):
            return ChainProblem(1, "anchor", "the retention anchor does not authenticate: it was "
                                             "changed by someone without the chain key")
        return None

    # --- verification -----------------------------------------------------------------------------

    def verify(self, txn: lmdb.Transaction, entries: Iterable[tuple[bytes, bytes]],
               opens: Callable[[bytes, bytes], bool] | None = None) -> ChainReport:
        """Walk ``entries`` (``(key, stored value)`` in key order, read in ``txn``) and report every
        broken place. ``opens(key, sealed)`` (optional) tells whether an entry authenticates under the
        ledger store key."""
        anchor = self.anchor(txn)
        head_seq, head_link = self.head(txn)
        report = ChainReport(head_seq=head_seq, head_link=head_link.hex(), anchor_seq=anchor.seq)
        problem = self._anchor_problem(txn)
        if problem is not None:
            report.problems.append(problem)
        expected, prev = anchor.seq, anchor.link  # the next sequence number, and the link it must hold
        for key, value in entries:
            seq = int.from_bytes(key, "big")
            value = bytes(value)
            report.entries += 1
            report.first_seq = report.first_seq or seq
            if seq < expected:  # only below the anchor: keys come in order
                report.problems.append(ChainProblem(seq, "broken_link", f"entry {seq} lies before the "
                                                    f"chain's start ({expected}): it was put back"))
                continue
            if seq > expected:
                gone = f"entry {expected} is" if seq - 1 == expected else \
                    f"entries {expected}..{seq - 1} are"
                report.problems.append(ChainProblem(expected, "missing", f"{gone} missing", seq - 1))
            elif value[:LINK_BYTES] != prev:
                before = f"entry {seq - 1}" if seq > anchor.seq else "the chain's start"
                report.problems.append(ChainProblem(
                    seq, "broken_link", f"entry {seq} does not follow {before}: one of them was "
                                        "changed"))
            if opens is not None and not opens(key, value[LINK_BYTES:]):
                report.problems.append(ChainProblem(seq, "unreadable", f"entry {seq} does not "
                                                    "authenticate: its sealed bytes were changed"))
            expected, prev = seq + 1, self.link(seq, value)
        if expected - 1 != head_seq:
            report.problems.append(ChainProblem(
                min(expected, head_seq + 1), "head",
                f"the newest entry is {expected - 1} but the recorded head is {head_seq}: entries "
                "were cut off or added"))
        elif expected > anchor.seq and prev != head_link:
            report.problems.append(ChainProblem(head_seq, "head", f"the newest entry {head_seq} does not "
                                                "match the recorded head: it was changed"))
        report.problems.sort(key=lambda p: p.seq)
        return report
