"""Erasure reaches the privacy stores (policy 7.1): after an account is erased, neither its id nor its
e-mail address opens from any value the privacy environment (``<data_dir>/privacy``: one-time links,
wallet challenges, data-subject requests) holds or ever held, to the holder of the master key and every
key the key directory still yields (``attacker_keys``). Pending links and challenges of the account are
gone; the record that the erasure request was received, verified and fulfilled stays (its retention row),
named by the account's pseudonym only, and still shows on time in the staff's list and overdue report.

The same attack before the erasure reads the account id in each of these stores, so the test is not blind.
"""

from __future__ import annotations

import pytest

from engine import Engine
from engine.errors import ChallengeInvalid
from tests.engine.test_erasure_disk_image_functional import attacker_keys, lmdb_values, readable
from tests.mailbox import Mailbox

EMAIL = "erased.dsar.p5@example.com"


def _image(engine: Engine, target) -> list[tuple[bytes, bytes]]:
    """Every value of the privacy environment at this moment (LMDB never wipes freed pages)."""
    target.mkdir()
    engine.privacy.env.copy(str(target))
    return lmdb_values(target)


def test_after_erasure_no_privacy_store_opens_the_account_id_or_address(tmp_path):
    down = Mailbox()
    port = down.port
    down.close()  # nothing listens: the mail stays queued (the erasure removes it)
    data = tmp_path / "data"
    engine = Engine.start(data, overrides={"email": {
        "host": "127.0.0.1", "port": port, "tls": "none", "retry_base_seconds": 60,
        "retry_cap_seconds": 60}})
    try:
        acc = engine.create_account(EMAIL)  # a pending confirmation link
        desk = engine.privacy.requests
        assert desk.request_by_email(EMAIL, "access", source="test") == 1  # a pending verify link
        challenge = desk.challenge(acc.id, "portability", source="test")  # a pending challenge
        [pending] = desk.list()
        erasure = desk.store.create(acc.id, "erasure", channel="wallet", verified_by="wallet:evm",
                                    opened_by="customer")
        images = _image(engine, tmp_path / "before")
        seen = readable(images, attacker_keys(data / "keys"))
        stores = {b"confirm_email", b"smsroute data-subject request"}
        # the confirmation link and the challenge name the account; so does each request record
        assert {s for s in stores for p in seen if s in p and acc.id.encode() in p} == stores
        assert any(acc.id.encode() in p and (p == acc.id.encode() or b"\xa6status" in p)
                   for p in seen)  # a request record's account id (nested, under the account key)
        assert any(b"verify_request" in p and pending["id"].encode() in p for p in seen)

        result = desk.fulfil(erasure.id, actor="privacy:test")
        images += _image(engine, tmp_path / "after")
        token = result["result"]["ledger_token"]
        with pytest.raises(ChallengeInvalid):  # its pending challenge is gone
            engine.privacy.challenges.take(challenge.challenge_id)

        # the privacy team still sees each request: received, verified, fulfilled, on time
        listed = {r["id"]: r for r in desk.list()}
        done = listed[erasure.id]
        assert done["status"] == "completed" and done["verification"] == "wallet:evm"
        assert done["received_at"] <= done["verified_at"] <= done["closed_at"] <= done["deadline"]
        assert not done["overdue"] and done["subject"] == token and done["account_id"] == ""
        assert listed[pending["id"]]["status"] == "awaiting_verification"
        assert listed[pending["id"]]["subject"] == token
        assert desk.list(overdue_only=True) == []
        assert desk.get(erasure.id)["subject"] == token
    finally:
        engine.stop()
    keys = attacker_keys(data / "keys")
    plaintexts = readable(images + lmdb_values(data / "privacy"), keys)
    assert [p for p in plaintexts if acc.id.encode() in p or EMAIL.encode() in p] == []
    # nor any of its pending links or challenges (they can never be used again)
    assert [p for p in plaintexts if b"verify_request" in p or b"confirm_email" in p
            or challenge.challenge_id.encode() in p] == []
    assert any(erasure.id.encode() in p for p in plaintexts)  # the record itself is kept, and read
    raw = b"".join(p.read_bytes() for p in (data / "privacy").rglob("*") if p.is_file())
    assert acc.id.encode() not in raw and EMAIL.encode() not in raw
