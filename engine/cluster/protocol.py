"""The cluster protocol: which processes of a cluster may work together.

Processes of different smsroute versions in one cluster failed obscurely: when ``ShardQuery``
``place_hold`` gained arguments, a new core with old workers failed every hold placement, and a hold
record with the new fields could not be read by an older version - partial failures, not a refusal. That
happens in a rolling upgrade (``--role`` processes on several hosts, upgraded one host at a time) and
when a worker or edge is started again from another install than the core's (the package upgraded under
a running ``smsroute run``).

So every worker and HTTP edge says which protocol it speaks: in its ready line to the ``smsroute run``
that starts it (:func:`ready_suffix`, read by ``engine.cluster.local``) and in every announcement on
``<prefix>.presence`` (``engine.cluster.presence``; the core's own announcements carry the core's). The
core hands no work to a process of another protocol: ``/readyz`` 503 naming it
(``worker:w1 (protocol 3, core 4)``), its accounts' submits refused at once (503
``cluster_unavailable``, nothing sent), no query sent to it, one ALARM line. A worker or edge that hears a
core of another protocol logs an ALARM line of its own. A process from before protocol numbers announces
nothing on NATS (it is ``not seen`` by a ``--role core`` and by the edges) and has no protocol in its
ready line (protocol 0 here): refused the same way.

Production code reads no setting to speak another protocol. Tests of a mixed cluster start a worker or
edge through a test-only entry point that sets :data:`PROTOCOL` in that child before the engine's
modules are imported (``tests/engine/cluster/other_protocol.py``, through
``engine.cluster.local.LocalCluster.child_command``); before, every worker and edge read a test-only
environment variable naming nodes and numbers, which production processes inherited too.
"""

from __future__ import annotations

# The protocol this version speaks. Bump it (by one) in the commit that changes what crosses NATS so
# that a process of the commit before would misread it or be misread, or fail on it: a message's fields,
# their types or meaning (engine.messages: a new field is such a change, the decoder checks arity), the
# arguments or answer of a ShardQuery / EdgeQuery kind (as when place_hold gained order_id and the core's
# pseudonym), a record one process writes and another reads, a subject or the envelope. Not for a change
# both sides take as before (a new query kind that an older process refuses with a clean error, a new
# message only sent when the other side asked for it). NEVER change the layout of
# engine.messages.WorkerPresence nor the ready lines' `protocol=` word: they are how processes of
# different protocols recognise each other, so every version must read every other's.
PROTOCOL = 1

#: A process from before protocol numbers (a ready line without ``protocol=``).
UNNUMBERED = 0
WORD = "protocol="  # in a ready line: "smsroute worker w0 ready protocol=1"


def ready_suffix(protocol: int) -> str:
    """What a worker or edge appends to its ready line."""
    return f" {WORD}{protocol}"


def of_ready_line(line: str) -> int:
    """The protocol a ready line names (:data:`UNNUMBERED` for a line without one, or one that does
    not parse: a process that says no number is not taken for one of ours)."""
    for word in line.split():
        if word.startswith(WORD):
            value = word[len(WORD):]
            return int(value) if value.isdigit() else UNNUMBERED
    return UNNUMBERED


def mismatch(theirs: int, ours: int, me: str = "core") -> str | None:
    """Why a process speaking ``theirs`` must not be handed work by one speaking ``ours`` (``me``: the
    role of the judging process, in the text): ``"protocol 3, core 4"``, or None when they agree. Only
    equal protocols work together: neither side knows what the other's number changed."""
    if theirs == ours:
        return None
    return f"protocol {theirs}, {me} {ours}"
