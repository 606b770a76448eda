"""``GET /v1/audit`` in a cluster pages on the workers: following ``next_since`` through the workers'
retention-exception trail gives every entry exactly once, in time order (also for one account), and no
worker's answer holds more than the page asked.

Before, the core asked every worker for every hold audit entry since ``since`` (the whole trail, moved
across NATS for every page) and paged on the core; and ``next_since`` was the instant of the page's
last entry, so the next page began with that entry again. Real nats-server, two worker processes, the
core's real control port; the core's questions are counted where it asks them
(``ClusterShards._ask``).
"""

from __future__ import annotations

import time

import pytest

from tests.engine.cluster.support import Cluster
from tests.engine.cluster.test_views_hung_worker_functional import _call
from tests.engine.crash_support import webhook_engine_overrides

pytestmark = pytest.mark.functional

PAGE = 5
TRAIL = "/v1/audit?kind=retention_exception"


def _page_through(port: int, token: str, query: str) -> tuple[list[dict], int]:
    """Every entry an auditor reads following ``next_since`` ``PAGE`` at a time, and the pages."""
    seen: list[dict] = []
    since, pages = 0.0, 0
    while since is not None:
        _, status, page = _call(port, token, "GET", f"{TRAIL}&limit={PAGE}&since={since!r}{query}")
        assert status == 200 and page["workers_missing"] == {}, page
        assert len(page["entries"]) <= PAGE
        seen += page["entries"]
        since, pages = page["next_since"], pages + 1
    return seen, pages


def test_paging_the_workers_trail_gives_each_entry_once_and_each_worker_answers_a_page(
        tmp_path, monkeypatch):
    c = Cluster(tmp_path, 2, overrides=webhook_engine_overrides(), http=True)
    try:
        port = c.engine.http.control_port
        token = (tmp_path / "core" / "operator.token").read_text().strip()
        one, other = c.accounts(2)[:2]
        for account in (one, other, one):  # each: a window at every POP of both workers, then ended
            placed = c.engine.place_hold("debug_window", actor="support:test", reason="debugging",
                                         reference="T-7", until=time.time() + 3600,
                                         account_id=account.id)["holds"]
            for hold in placed:
                c.engine.release_hold(hold["hold_id"], actor="support:test", reason="done")
        shards = c.engine.runtime.shards
        answers: list[tuple[str, int]] = []
        ask = shards._ask

        def counted(node, kind, *args, **kw):
            result = ask(node, kind, *args, **kw)
            if kind.startswith("hold_audit"):
                answers.append((kind, len(result)))
            return result

        monkeypatch.setattr(shards, "_ask", counted)

        _, status, whole = _call(port, token, "GET", f"{TRAIL}&limit=1000")
        assert status == 200 and whole["next_since"] is None
        entries = whole["entries"]
        assert len(entries) >= 4 * 3 * PAGE // 2  # windows placed and ended at every POP, 3 times
        assert {e["target"].split("_")[0] for e in entries} == {"hold"}
        key = [(e["ts"], e["target"], e["action"]) for e in entries]
        assert key == sorted(key) and len(set(key)) == len(key)
        answers.clear()

        seen, pages = _page_through(port, token, "")
        assert pages > len(entries) // PAGE  # many pages
        assert seen == entries  # every entry once, in order: nothing repeated at a page's end
        assert answers and max(n for _, n in answers) <= PAGE + 1  # a worker answers a page at most

        subject = entries[0]["subject"]  # one account, as the core names it (engine.core_names)
        mine = [e for e in entries if e["subject"] == subject]
        assert 0 < len(mine) < len(entries)
        seen, _ = _page_through(port, token, f"&subject={subject}")
        assert seen == mine  # one account's entries, filtered where they are
    finally:
        c.stop()
