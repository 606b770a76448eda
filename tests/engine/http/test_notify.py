"""Status hand-off from engine threads: never blocks, bounded, and events have stable ids."""

from __future__ import annotations

import asyncio
import json
import threading

from engine.http.notify import StatusInbox, event_body, event_id
from engine.messages import StatusItem


def _item(n: int, status: str = "delivered") -> StatusItem:
    return StatusItem(f"msg_{n:032x}", "acc", status, 1.0, "fra", "c", "DE", 1, 10, "", None)


def test_the_inbox_never_blocks_the_engine_and_drops_the_oldest_when_full():
    loop = asyncio.new_event_loop()  # not running: nothing drains
    got: list = []
    inbox = StatusInbox(loop, got.extend, limit=10)
    done = threading.Event()

    def engine_thread():
        for n in range(1000):
            inbox.on_status(_item(n))
        done.set()

    threading.Thread(target=engine_thread).start()
    assert done.wait(10)
    loop.run_until_complete(asyncio.sleep(0))  # let the scheduled drain run once
    loop.close()
    assert [i.message_id for i in got] == [_item(n).message_id for n in range(990, 1000)]
    assert inbox.received == 1000


def test_event_ids_are_stable_per_message_and_status_and_in_the_body():
    a, b = event_id("msg_1", "delivered"), event_id("msg_1", "delivered")
    assert a == b != event_id("msg_1", "failed")
    body = json.loads(event_body(_item(7)))
    assert body["id"] == event_id(_item(7).message_id, "delivered")
    assert body["data"]["status"] == "delivered" and "body" not in body["data"]


def test_live_events_arriving_while_the_outbox_is_read_never_overtake_older_ones():
    from engine.http.webhook_feed import Endpoint, Stored, WebhookFeed

    sent: list = []

    class Dispatcher:
        counts: dict = {}
        has_room = True

        def submit(self, delivery):
            sent.append([(ev.item.message_id, ev.item.status) for ev in delivery.events])
            return True

    feed = WebhookFeed(Dispatcher(), lambda item: Endpoint("http://x", 1, 0.0), lambda pop, seqs: None)
    feed.hold()
    feed.add([Stored("fra", 2, _item(1, "delivered"))])  # live, while the outbox is being read
    assert sent == []
    feed.recovered([Stored("fra", 1, _item(1, "accepted")), Stored("fra", 2, _item(1, "delivered"))])
    assert sent == [[(_item(1).message_id, "accepted")]]  # the older one first, the live one waits
    feed.finished(type("D", (), {"events": [Stored("fra", 1, _item(1, "accepted"))]})(), "delivered")
    assert sent[1:] == [[(_item(1).message_id, "delivered")]] and feed.backlog == 1


def test_a_full_dispatcher_holds_outbox_events_back_instead_of_acknowledging_them():
    """Durable events the dispatcher has no room for are not reported done (they stay in the outbox):
    they wait, counted as held, and are offered again in order as deliveries finish."""
    from engine.http.webhook_feed import Endpoint, Stored, WebhookFeed

    class Dispatcher:
        counts: dict = {}
        room = 1
        sent: list = []

        @property
        def has_room(self):
            return len(self.sent) < self.room

        def submit(self, delivery):
            assert self.has_room
            self.sent.append(delivery)
            return True

    done: list = []
    d = Dispatcher()
    feed = WebhookFeed(d, lambda item: Endpoint("http://x", 1, 0.0), lambda pop, seqs: done.extend(seqs))
    loop = asyncio.new_event_loop()
    feed.bind(loop)
    feed.add([Stored("fra", n, _item(n)) for n in range(1, 4)])  # three messages, room for one
    assert [e.seq for dl in d.sent for e in dl.events] == [1] and feed.held == 2 and done == []
    assert feed.backlog == 3
    first = d.sent.pop()
    feed.finished(first, "delivered")
    loop.run_until_complete(asyncio.sleep(0))
    assert done == [1] and [e.seq for e in d.sent[0].events] == [2] and feed.held == 1
    feed.finished(d.sent.pop(), "dropped")  # a drop (had the check raced) is never acknowledged
    loop.run_until_complete(asyncio.sleep(0))
    assert done == [1] and feed.held == 1 and [e.seq for e in d.sent[0].events] == [2]
    loop.close()
