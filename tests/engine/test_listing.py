"""Listing an account's messages across POPs: every matching message once, newest first, whatever the
page size, the filter or how little each POP may read per page."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from engine import listing
from engine.ids import IdGenerator
from engine.status import STATUSES
from storage.env import open_env
from storage.records import MessageRecord, MessageRecords
from tests.storage.conftest import account_keys_in

ACCOUNT, OTHER = "acc_0123456789abcdef", "acc_fedcba9876543210"


def _record(message_id: str, account: str, status: str) -> MessageRecord:
    return MessageRecord(message_id, account, "+4915112345678", "ACME", "DE", "fra", "", "GSM-7", 1, 1,
                         1.0, 1.0, status, "", 30, None, 0, 0.0)


@settings(max_examples=15, deadline=None)
@given(layout=st.lists(st.tuples(st.integers(0, 2), st.sampled_from(STATUSES), st.booleans()),
                       max_size=60),
       limit=st.integers(1, 7), scan=st.integers(1, 9),
       wanted=st.none() | st.frozensets(st.sampled_from(STATUSES), min_size=1))
def test_pages_list_every_matching_message_once_newest_first(tmp_path_factory, layout, limit, scan,
                                                             wanted):
    tmp = tmp_path_factory.mktemp("listing")
    keys = account_keys_in(tmp / "keys", ACCOUNT, OTHER)
    stores = [SimpleNamespace(records=MessageRecords(open_env(tmp / f"pop{n}", map_size=8 << 20), keys))
              for n in range(3)]
    ids = IdGenerator()
    expected = []
    for pop, status, mine in layout:
        mid = ids.new()
        store = stores[pop].records
        with store.env.begin(write=True) as txn:
            store.put_many(txn, [_record(mid, ACCOUNT if mine else OTHER, status)])
        if mine and (wanted is None or status in wanted):
            expected.append(mid)
    original, listing.SCAN_LIMIT = listing.SCAN_LIMIT, scan
    try:
        seen, cursor = [], None
        for _ in range(500):
            page, cursor = listing.page(
                lambda *args: listing.store_pages(stores, *args), ACCOUNT, limit=limit, cursor=cursor,
                statuses=wanted)
            assert len(page) <= limit
            seen += [r.message_id for r in page]
            if cursor is None:
                break
    finally:
        listing.SCAN_LIMIT = original
        for store in stores:
            store.records.env.close()
    assert seen == sorted(expected, reverse=True)
