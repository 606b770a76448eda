"""The incident desk reads each incident's counts, not its holders' rows (listing, stats)."""

from __future__ import annotations

from types import SimpleNamespace

from engine.privacy.incidents import IncidentDesk
from storage.env import open_env
from storage.incidents import Incident, IncidentStore
from storage.keys import KeyRing, LocalKeyProvider
from tests.storage.conftest import T0, FakeClock
from tests.storage.incident_layouts import CountingSealer, put_with_rows_without_counts


def test_an_incident_with_nothing_waiting_is_counted_at_its_first_look_through_the_desk(tmp_path):
    """An older layout's incident whose mails all ended is written once, at the first listing, so that
    later listings read its counts only."""
    keys = KeyRing(tmp_path / "keys", LocalKeyProvider(tmp_path / "keys"))
    env = open_env(tmp_path / "privacy", map_size=16 << 20)
    sealer = CountingSealer(keys.store_sealer("incidents"))
    put_with_rows_without_counts(env, sealer, Incident(
        id="inc_done", summary="leak", detected_at=T0, opened_at=T0, opened_by="officer",
        accounts=["*"], customers_notified_at=T0), [["psn_a", "", "sent"], ["psn_b", "", "sent"]])
    store = IncidentStore(env, sealer, clock=FakeClock())
    desk = IncidentDesk(store, SimpleNamespace(outbox=SimpleNamespace(outcome=lambda m: "queued")),
                        None, lambda *a, **k: None, clock=FakeClock())
    assert [i["customers_notified"] for i in desk.list()] == [2]
    sealer.opened = 0
    assert [i["customers_notified"] for i in desk.list()] == [2] and sealer.opened == 1
    env.close()
