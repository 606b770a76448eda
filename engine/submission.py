"""The checks a submit gets before it enters the actors, and the hand-off itself (the embedding API's
``submit_future`` and ``submit_many`` share them).

What can be refused without an actor is refused here, at once, as a typed error: wrong argument types,
bounds, the callback URL's form, a body far beyond any segment limit. The hand-off encodes the message and
tells the account's session; if either fails, every request of the hand-off is failed through the bridge,
which gives their in-flight slots back.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pykka

from engine import messages as m
from engine.completion import Completion
from engine.errors import (
    BodyTooLarge,
    InputError,
    OverloadedError,
    SmsrouteError,
)

# bytes of one hand-off frame at most: a batch over it is told as several (in order). A cluster carries
# the frame as one NATS message (``engine.cluster.transport.MAX_PAYLOAD``, the server refuses one over
# 1 MiB): 1,000 messages of 10 segments are ~1.4 MB.
MAX_FRAME = 256 * 1024
MAX_VALIDITY_SECONDS = 86400  # a message never waits longer than its body may be kept
MAX_CLIENT_REF = 64  # characters of a customer's own reference
# Unicode's control characters (category Cc: C0, DEL and C1), the one definition the HTTP API's
# ClientRef type takes too: a client_ref is echoed in webhooks, listings and exports
CONTROL_CHARACTERS = "\\x00-\\x1f\\x7f-\\x9f"
_CONTROL = re.compile(f"[{CONTROL_CHARACTERS}]")


def item(engine: Any, digest: bytes, to: Any, sender: Any, body: Any, validity_seconds: Any,
         callback_url: Any, client_ref: Any) -> m.SubmitItem:
    """Check what can be checked before the actors (types, bounds, the callback URL's form)."""
    for name, value in (("to", to), ("sender", sender), ("body", body)):
        if not isinstance(value, str):
            raise InputError(f"{name} must be a string")
    if validity_seconds is not None and (not isinstance(validity_seconds, int)
                                         or isinstance(validity_seconds, bool)
                                         or validity_seconds < 1):
        raise InputError("validity_seconds must be a positive integer")
    if client_ref is not None and (not isinstance(client_ref, str)
                                   or not 1 <= len(client_ref) <= MAX_CLIENT_REF):
        raise InputError(f"client_ref must be 1-{MAX_CLIENT_REF} characters")
    if client_ref is not None and _CONTROL.search(client_ref):  # echoed in webhooks and listings
        raise InputError("client_ref must not contain control characters")
    if callback_url is not None:
        engine.check_webhook_url(callback_url, "callback_url")
    if len(body) > engine.max_body_chars * 2:  # far beyond any segment limit: refuse before work
        raise BodyTooLarge(
            f"body of {len(body)} characters exceeds {engine.settings.engine.max_segments} segments")
    validity = min(validity_seconds or 0, MAX_VALIDITY_SECONDS)
    return m.SubmitItem(0, digest, to, sender, body, validity, callback_url, time.time(),
                        client_ref)


def prepare(engine: Any, digest: bytes, submissions: list[dict],
            new_request: Callable[[], tuple[int, Future]], admit: Callable[[], None] | None = None,
            reply_to: str = "") -> tuple[list[Future], list[m.SubmitItem]]:
    """Each submission (a dict of ``item``'s arguments) checked, admitted and given a request: one
    future per submission, in order (a refused one already failed with its typed error), and the items
    to hand to the session. ``admit`` raises to refuse one (the in-flight gate); ``reply_to`` names the
    bridge the answers go to."""
    futures: list[Future] = []
    items: list[m.SubmitItem] = []
    for sub in submissions:
        try:
            if not isinstance(sub, dict):
                raise InputError("each submission is a dict of submit's arguments (to, sender, body...)")
            it = item(engine, digest, sub.get("to"), sub.get("sender"), sub.get("body"),
                      sub.get("validity_seconds"), sub.get("callback_url"), sub.get("client_ref"))
            if admit is not None:
                admit()
        except SmsrouteError as exc:
            failed = Completion()
            failed.set_exception(exc)
            futures.append(failed)
            continue
        request_id, fut = new_request()
        items.append(it._replace(request_id=request_id, reply_to=reply_to))
        futures.append(fut)
    return futures, items


def encode_or_fail(bridge: Any, request_ids: list[int], msg: m.Message) -> bytes:
    try:
        return m.encode(msg)
    except (UnicodeEncodeError, OverflowError, ValueError, TypeError):
        error = InputError("to, sender, body, callback_url and client_ref must be valid Unicode "
                           "text")
        for request_id in request_ids:
            bridge.fail(request_id, error)  # gives the in-flight slot back
        raise error from None


def hand_off(bridge: Any, session: Any, items: list[m.SubmitItem]) -> None:
    """Tell the session ``items`` as ``SubmitMessages`` frames of at most ``MAX_FRAME`` bytes each (one
    frame unless the batch is larger: the usual batch is encoded once). Every request fails through the
    bridge if a part does not encode or the session cannot be told (``encode_or_fail``,
    ``tell_or_fail``)."""
    ids = [i.request_id for i in items]
    parts = _frames(bridge, ids, items)
    for n, (part_ids, raw) in enumerate(parts):
        try:
            tell_or_fail(bridge, session, raw, part_ids)
        except SmsrouteError as exc:
            for later, _ in parts[n + 1:]:  # nothing told of these either: the same error
                for request_id in later:
                    bridge.fail(request_id, exc)
            raise


def _frames(bridge: Any, ids: list[int], items: list[m.SubmitItem]
            ) -> list[tuple[list[int], bytes]]:
    raw = encode_or_fail(bridge, ids, m.SubmitMessages(items))
    if len(raw) <= MAX_FRAME or len(items) == 1:
        return [(ids, raw)]
    half = len(items) // 2
    return _frames(bridge, ids[:half], items[:half]) + _frames(bridge, ids[half:], items[half:])


def tell_or_fail(bridge: Any, session: Any, raw: bytes, request_ids: list[int]) -> None:
    error: OverloadedError | None = None
    if getattr(session, "remote", False):
        # refused now, nothing sent, while the NATS link is down or not moving (left in the client's
        # reconnect buffer it would wait 10-20 s for ClusterUnavailable - and then still be sent and
        # billed on reconnect), or while the account's worker is not ready (engine.cluster.presence:
        # published to a worker that is not subscribed or not running, it would be lost, and the
        # client would wait 10-20 s for a 503 saying it may have been accepted)
        error = session.refusal()
        if error is None:  # noted before it is sent: if that worker is then judged gone, these
            bridge.sent_to(request_ids, session.node)  # fail at once (engine.cluster.pending_watch)
    if error is None:
        try:
            session.tell(raw)
            return
        except pykka.ActorDeadError:
            error = OverloadedError("the account's session is not running; retry shortly")
    for request_id in request_ids:
        bridge.fail(request_id, error)
    raise error from None
