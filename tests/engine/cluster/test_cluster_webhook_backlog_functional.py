"""Durable webhooks in a cluster while the receiver stalls: every worker stores events in its POP shards'
outboxes, the core's dispatcher has room for ``webhook_max_backlog`` deliveries. No stored event may be
removed from an outbox before it was delivered (the receiver recovers: all of them arrive)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.engine.cluster.support import Cluster
from tests.engine.crash_support import webhook_engine_overrides
from tests.engine.http.conftest import Client
from tests.waiting import wait_for

MAX_BACKLOG = 6  # 3 POPs x 2 workers: one event per POP shard


class StallingReceiver:
    """Holds every webhook POST unanswered until :meth:`recover`, then answers 200; records event ids."""

    def __init__(self) -> None:
        self.recovered = threading.Event()
        self.ids: list[str] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.recovered.wait(30)
                with outer.lock:
                    outer.ids.append(self.headers["Smsroute-Event-Id"])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.recovered.set()
        self.server.shutdown()
        self.server.server_close()


def test_no_stored_event_is_removed_before_delivery_while_the_dispatcher_is_full(tmp_path):
    from engine.http.webhook_feed import event_id

    overrides = webhook_engine_overrides()
    overrides["http"]["webhook_max_backlog"] = MAX_BACKLOG
    receiver = StallingReceiver()
    stored: set[str] = set()
    lock = threading.Lock()
    c = Cluster(tmp_path, 2, overrides=overrides, http=True)
    try:
        def sink(pop, seqs, items):
            with lock:
                stored.update(event_id(i.message_id, i.status) for i in items)

        c.engine.on_webhook_events(sink)
        messages = []
        for account in c.accounts(2):  # one on each worker
            api = Client(c.engine.http.customer_port, account.api_key)
            assert api.request("PUT", "/v1/webhook", {"url": receiver.url})[0] == 200
            batch = [{"to": to, "from": "ACME", "body": "stall"}
                     for to in ["+4915112345678", "+6591234567", "+5511912345678"] * 3]
            status, _, answer = api.request("POST", "/v1/messages/batch", {"messages": batch})
            assert status == 200 and answer["accepted"] == len(batch), answer
            messages += [r["id"] for r in answer["results"]]
        wait_for(lambda: all(c.final_in_store(m) == "delivered" for m in messages),
                 "every message delivered to its carrier", timeout=60)
        feed = c.engine.http.ctx.feed
        wait_for(lambda: feed.backlog >= MAX_BACKLOG, "the dispatcher full of stalled deliveries")
        with lock:
            assert len(c.engine.pending_webhook_events()) <= MAX_BACKLOG  # the bound holds cluster-wide
        receiver.recovered.set()
        wait_for(lambda: not c.engine.pending_webhook_events() and feed.backlog == 0,
                 "the outboxes emptied", timeout=60)
        with lock, receiver.lock:
            assert stored and stored <= set(receiver.ids), sorted(stored - set(receiver.ids))
        assert c.engine.http.ctx.dispatcher.counts["dropped"] == 0
    finally:
        receiver.close()
        c.stop()
