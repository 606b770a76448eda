"""Usage exports: an account's billing for a period, one row per message plus its deposits and
adjustments, as CSV or JSON, produced a chunk at a time (a year of traffic is never held in memory).

Rows come from the ledger, in the order it was written, for items with ``since <= time < until``:

* ``message`` — one per debit: ``id`` (message id), ``time`` (when it was accepted), ``price_micro_usd``
  (the debit), ``refund_micro_usd`` (its refund, if there is one — also when it was refunded after the
  period), ``country``, ``segments`` and ``status`` from the message record;
* ``deposit`` — ``id`` (transaction hash), ``chain``, ``from_address``;
* ``adjustment`` — ``id`` (the operator's key for it), ``reason``;
* ``refund`` — only for a refund whose debit the ledger does not have (reconciliation reports those).

``amount_micro_usd`` is what the row did to the balance (a message: refund minus price), so the rows of
every period add up to the balance: an export from the account's beginning to now sums to its balance.

Where the columns come from: ``country``, ``segments`` and ``status`` live in the message records, kept 90
days (policy 6); everything else lives in the ledger, kept 7 years. A row of a message older than its
record has those three columns empty (``status`` is ``""``, not a guess). No row ever holds a body or a
destination number.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

from engine.errors import InputError
from storage.ledger import ADJUSTMENT, DEBIT, DEPOSIT, REFUND, LedgerEntry, LedgerStore

FORMATS = ("json", "csv")
CHUNK_ROWS = 500  # rows read (and message records looked up) and encoded per chunk of an export
_OPENED = 64  # refund entries kept open while an export runs


@dataclass(frozen=True)
class UsageRow:
    type: str  # message | deposit | adjustment | refund
    id: str
    time: str  # ISO 8601, UTC
    country: str = ""
    segments: int | str = ""
    status: str = ""
    price_micro_usd: int = 0
    refund_micro_usd: int = 0
    amount_micro_usd: int = 0
    chain: str = ""
    from_address: str = ""
    reason: str = ""


COLUMNS = tuple(f.name for f in fields(UsageRow))


@dataclass
class Totals:
    messages: int = 0
    price_micro_usd: int = 0
    refund_micro_usd: int = 0
    deposits_micro_usd: int = 0
    adjustments_micro_usd: int = 0
    amount_micro_usd: int = 0

    def add(self, row: UsageRow) -> None:
        self.messages += row.type == "message"
        self.price_micro_usd += row.price_micro_usd
        self.refund_micro_usd += row.refund_micro_usd
        self.deposits_micro_usd += row.amount_micro_usd if row.type == DEPOSIT else 0
        self.adjustments_micro_usd += row.amount_micro_usd if row.type == ADJUSTMENT else 0
        self.amount_micro_usd += row.amount_micro_usd


_UNENCODED_OFFSET = re.compile(r"\d \d\d:?\d\d$")


def parse_time(value: str | None, default: float, name: str) -> float:
    """A period bound: unix seconds, or an ISO 8601 date or date-time (UTC unless it says otherwise)."""
    if value is None or value == "":
        return default
    try:
        t = float(value)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            if _UNENCODED_OFFSET.search(value):  # "...T02:00:00 02:00": a query string's "+" is a space
                raise InputError(f"{name}: the '+' of a UTC offset must be sent as %2B in a URL "
                                 "(or give the time in UTC, with Z)") from None
            raise InputError(f"{name} must be unix seconds or an ISO 8601 date") from None
        t = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(t):
        raise InputError(f"{name} must be a finite time")
    try:  # the export names its period as ISO 8601 dates: a bound no date can say is refused here
        iso(t)
    except (OverflowError, OSError, ValueError):
        raise InputError(f"{name} must be between the years 1 and 9999") from None
    return t


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def usage_rows(ledger: LedgerStore, find_records: Callable[[list[str]], list[Any]], account_id: str,
               since: float, until: float) -> Iterator[UsageRow]:
    """The account's rows for ``[since, until)``; ``find_records`` looks a chunk of message ids up in
    the POP shards (``engine.cluster.shards``: here, or on every worker of a cluster)."""
    refunds = _Refunds(ledger)
    chunk: list[LedgerEntry] = []
    for item in ledger.entries(account_id, since, until):
        chunk.append(item)
        if len(chunk) == CHUNK_ROWS:
            yield from _rows(ledger, chunk, find_records, refunds)
            chunk = []
    yield from _rows(ledger, chunk, find_records, refunds)


def _rows(ledger: LedgerStore, items: list[LedgerEntry], find_records: Callable[[list[str]], list[Any]],
          refunds: _Refunds) -> Iterator[UsageRow]:
    debits = [i.reference for i in items if i.kind == DEBIT]
    records = dict(zip(debits, find_records(debits), strict=True)) if debits else {}
    for item in items:
        if item.kind == DEBIT:
            yield _message_row(item, refunds.amount(item.reference), records.get(item.reference))
        elif item.kind == DEPOSIT:
            yield UsageRow(DEPOSIT, item.reference, iso(item.at), amount_micro_usd=item.amount_micro_usd,
                           chain=item.chain, from_address=item.from_address)
        elif item.kind == ADJUSTMENT:
            yield UsageRow(ADJUSTMENT, item.reference, iso(item.at),
                           amount_micro_usd=item.amount_micro_usd, reason=item.reason)
        elif item.kind == REFUND and not ledger.has(DEBIT, item.reference):
            yield UsageRow(REFUND, item.reference, iso(item.at), refund_micro_usd=item.amount_micro_usd,
                           amount_micro_usd=item.amount_micro_usd)


def _message_row(debit: LedgerEntry, refund: int, rec: Any) -> UsageRow:
    price = -debit.amount_micro_usd
    return UsageRow("message", debit.reference, iso(debit.at),
                    country=rec.country if rec else "", segments=rec.segments if rec else "",
                    status=rec.status if rec else "", price_micro_usd=price, refund_micro_usd=refund,
                    amount_micro_usd=refund - price)


class _Refunds:
    """A message's refund, by the index; the refund entries read lately stay open (a batch of refunds
    is one entry, so an export opens it once, not once per message)."""

    def __init__(self, ledger: LedgerStore) -> None:
        self._ledger = ledger
        self._open: OrderedDict[int, list[LedgerEntry]] = OrderedDict()

    def amount(self, message_id: str) -> int:
        where = self._ledger.locate(REFUND, message_id)
        if where is None:
            return 0
        items = self._open.get(where.seq)
        if items is None:
            items = self._open[where.seq] = self._ledger.items(where.seq)
            if len(self._open) > _OPENED:
                self._open.popitem(last=False)
        return items[where.item].amount_micro_usd


# --- encodings: each yields bytes, a chunk of rows at a time -------------------------------------


def encode_csv(rows: Iterable[UsageRow]) -> Iterator[bytes]:
    """A header line, then one line per row (RFC 4180, ``\\r\\n``)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for n, row in enumerate(rows, 1):
        writer.writerow([getattr(row, c) for c in COLUMNS])
        if n % CHUNK_ROWS == 0:
            yield _take(out)
    yield _take(out)


def encode_json(rows: Iterable[UsageRow], head: dict[str, Any],
                tail: Callable[[], dict[str, Any]] | None = None) -> Iterator[bytes]:
    """``{**head, "rows": [...], "totals": {...}, **tail()}``; the totals are the sum of the rows,
    ``tail`` is called once the rows are written."""
    totals = Totals()
    opening = json.dumps(head, separators=(",", ":"))[:-1]
    parts = [opening + (',"rows":[' if head else '"rows":[')]
    for n, row in enumerate(rows):
        totals.add(row)
        parts.append(("," if n else "") + json.dumps(asdict(row), separators=(",", ":")))
        if len(parts) >= CHUNK_ROWS:
            yield "".join(parts).encode()
            parts = []
    closing = {"totals": asdict(totals), **(tail() if tail is not None else {})}
    parts.append("]," + json.dumps(closing, separators=(",", ":"))[1:])
    yield "".join(parts).encode()


def _take(out: io.StringIO) -> bytes:
    data = out.getvalue().encode()
    out.seek(0)
    out.truncate()
    return data
